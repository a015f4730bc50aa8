"""Every objective of the table trains through the `train` stage; what each one needs and skips.

- every policy objective (and a weighted combination, LD-DPO, WPO, f-DPO) runs a step of `podium train`;
- reference-free objectives (SimPO, CPO, ORPO, sft) never load or score a reference (no pass, no cache entry);
- KTO reads TRL's unpaired format, or unpairs pairs; its config and data errors name the key or the record;
- the loop averages a metric over the examples it covers (KTO's chosen and rejected sides);
- the card's method line names the objective, a combination, and the modifiers a stage turns on;
- a selfplay stage's `train:` may name any pairwise objective.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from pydantic import ValidationError
from tests.pref_helpers import PAIRS, save_tiny, write_pairs

from podium.cards.methods import stage_method
from podium.errors import DataError
from podium.losses import LOSS_SPECS
from podium.stages import run_stage
from podium.training.train import TrainConfig

POLICY = [n for n, s in LOSS_SPECS.items() if s.kind == "policy"]
SCORED = [{**p, "chosen_prob": 0.8, "rejected_prob": 0.3, "pair_prob": 0.7, "chosen_score": 0.4, "rejected_score": -0.2}
          for p in PAIRS]
UNPAIRED = [{"prompt": p["prompt"], "completion": p[side], "label": side == "chosen"}
            for p in PAIRS for side in ("chosen", "rejected")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("objectives")
    save_tiny(d / "model")
    save_tiny(d / "ref", seed=1)
    write_pairs(d / "pairs.jsonl", SCORED)
    write_pairs(d / "unpaired.jsonl", UNPAIRED)
    return d


def run(files, tmp_path, name="out", **cfg):
    base = {"model": str(files / "model"), "data": str(files / "pairs.jsonl"), "batch_size": 4, "max_steps": 1,
            "max_length": 64, "reference_cache_dir": str(tmp_path / "cache")}
    metrics = run_stage("train", {**base, **cfg}, tmp_path / name)
    (row,) = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return metrics, row


@pytest.mark.parametrize("objective", POLICY)
def test_every_policy_objective_trains_through_the_train_stage(files, tmp_path, objective, monkeypatch):
    import podium.training.preference_inputs as inputs

    spec = LOSS_SPECS[objective]
    if spec.reference_free:  # no reference model is loaded and no reference pass runs
        monkeypatch.setattr(inputs, "cached_reference_logps", lambda *a, **k: pytest.fail("a reference pass ran"))
    metrics, row = run(files, tmp_path, objective=objective)
    assert math.isfinite(row["loss"]) and "logps/chosen" in row
    assert ("reference/cache_hit" in metrics) == (not spec.reference_free)
    assert (tmp_path / "cache").exists() == (not spec.reference_free)
    assert (tmp_path / "out" / "model.safetensors").exists()
    if spec.unpaired:
        assert metrics["pairs/kept"] == 2 * len(PAIRS)  # the pairs, unpaired as TRL unpairs them
        assert "rewards/margins" not in row and {"rewards/chosen", "rewards/rejected"} & set(row)
        if objective == "kto":  # sequential batches: the first of TRL's unpaired order is all desirable
            assert "rewards/chosen" in row and "rewards/rejected" not in row
    elif objective != "sft":
        assert "rewards/margins" in row


@pytest.mark.parametrize("cfg", [
    {"objective": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]},
    {"objective": "sigmoid", "ld_alpha": 0.5},
    {"objective": "dpo", "use_weighting": True},
    {"objective": "hinge", "f_divergence_type": "js_divergence"},
    {"objective": "simpo", "alphapo_alpha": 0.25, "cpo_alpha": 0.5},
], ids=["mpo", "ld", "wpo", "f-dpo", "alphapo"])
def test_combinations_and_modifiers_train(files, tmp_path, cfg):
    """Against a reference other than the policy (rho != 0), each modifier or added term moves the loss."""
    first = cfg["objective"] if isinstance(cfg["objective"], str) else cfg["objective"][0]
    ref = {} if LOSS_SPECS[first].reference_free else {"reference": str(files / "ref")}
    metrics, row = run(files, tmp_path, **cfg, **ref)
    assert math.isfinite(row["loss"])
    base_cfg = {"objective": cfg["objective"] if isinstance(cfg["objective"], str) else "sigmoid"}
    _, base = run(files, tmp_path, name="base", **base_cfg, **ref)
    assert row["loss"] != pytest.approx(base["loss"], rel=1e-4)  # the modifier or the other terms took part


def test_ld_dpo_scores_the_reference_on_the_common_length_too(files, tmp_path):
    metrics, _ = run(files, tmp_path, objective="sigmoid", ld_alpha=0.0)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # full completions, and cut to the common length
    again, _ = run(files, tmp_path, name="again", objective="sigmoid", ld_alpha=0.0)
    assert metrics["reference/cache_hit"] == 0.0 and again["reference/cache_hit"] == 1.0


def test_kto_reads_trls_unpaired_format_in_sequential_batches(files, tmp_path):
    metrics, row = run(files, tmp_path, objective="kto", data=str(files / "unpaired.jsonl"), batch_size=4)
    assert metrics["pairs/kept"] == len(UNPAIRED) and row["kl"] >= 0
    assert TrainConfig.model_validate({"model": "m", "data": "d", "objective": "kto"}).shuffle is False


@pytest.mark.parametrize("bad, key", [
    ({"objective": "exo_pair", "label_smoothing": 0.0}, "label_smoothing"),  # EXO needs eps > 0
    ({"objective": "simpo", "reference": "r"}, "reference"),
    ({"objective": "kto", "batch_size": 1}, "batch_size"),
    ({"objective": ["sigmoid", "kto"]}, "objective"),
    ({"objective": ["sigmoid", "reward"]}, "objective"),
    ({"objective": ["sigmoid", "sigmoid"]}, "objective"),
    ({"objective": ["sigmoid", "sft"], "loss_weights": [1.0]}, "loss_weights"),
    ({"objective": "nca_pair", "f_divergence_type": "forward_kl"}, "f_divergence_type"),  # no f-DPO form
    ({"objective": "aot", "use_weighting": True}, "use_weighting"),  # TRL refuses WPO with sorting losses
    ({"objective": "dpo", "f_divergence_type": "kl"}, "f_divergence_type"),
    ({"objective": "dpo", "ld_alpha": 1.5}, "ld_alpha"),
    ({"objective": "discopop", "discopop_tau": 0}, "discopop_tau"),
    ({"objective": "orpo", "cpo_alpha": 1.0}, "cpo_alpha"),
])
def test_config_errors_name_the_key(bad, key):
    with pytest.raises(ValidationError) as e:
        TrainConfig.model_validate({"model": "m", "data": "d", **bad})
    assert [".".join(map(str, err["loc"])) for err in e.value.errors()] == [key]


def test_objective_defaults_follow_trl_and_the_papers():
    def cfg(**kw):
        return TrainConfig.model_validate({"model": "m", "data": "d", **kw})

    assert cfg(objective="exo_pair").label_smoothing == 1e-3  # the EXO paper's (TRL refuses its default 0)
    assert cfg(objective="simpo").cpo_alpha == 0.0 and cfg(objective="cpo").cpo_alpha == 1.0
    assert cfg(objective="simpo").simpo_gamma == 0.5 and cfg(objective="discopop").discopop_tau == 0.05
    assert cfg(objective="dpo").learning_rate == 1e-6
    # a combination takes the settings of its components, each applied where it is listed
    mix = cfg(objective=["sigmoid", "sft"], loss_weights=[1.0, 0.5], ld_alpha=0.5)
    assert mix.objectives == ("sigmoid", "sft") and mix.loss_kwargs()["beta"] == 0.1


def test_unpaired_data_errors_name_the_record(tmp_path):
    from podium.data.unpaired import read_unpaired

    path = tmp_path / "u.jsonl"
    write_pairs(path, [UNPAIRED[0], {"prompt": "p", "completion": "c", "label": "yes"}])
    with pytest.raises(DataError, match=r"u.jsonl:2: field 'label' must be true or false"):
        read_unpaired(str(path))
    write_pairs(path, [UNPAIRED[0], {"prompt": "p", "completion": "c"}])
    with pytest.raises(DataError, match=r"u.jsonl:2: missing field 'label'"):
        read_unpaired(str(path))
    write_pairs(path, [UNPAIRED[0], PAIRS[0]])
    with pytest.raises(DataError, match=r"u.jsonl:2: the data mixes preference pairs"):
        read_unpaired(str(path))
    write_pairs(path, [{"prompt": "p", "completion": 3, "label": True}])
    with pytest.raises(DataError, match=r"u.jsonl:1: field 'completion' must be a string"):
        read_unpaired(str(path))


def test_unpairing_and_kl_completions_are_trls(tmp_path):
    """Against TRL 1.16 itself: `unpair_preference_dataset`'s order, and the KL completions `KTOTrainer` prepares
    (rotated by one within each per-device batch, after prompts that fill max_length are dropped)."""
    pytest.importorskip("trl")
    import datasets
    from trl import KTOConfig, KTOTrainer
    from trl.data_utils import unpair_preference_dataset

    from podium.data.unpaired import tokenize_unpaired, unpair
    from podium.models.tiny import build_tiny_model

    datasets.disable_progress_bars()
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in PAIRS if isinstance(p["prompt"], str)]
    pairs = pairs + [{"prompt": "x" * 70, "chosen": "a", "rejected": "b"}] + [
        {"prompt": f"{i} + {i}?", "chosen": str(2 * i), "rejected": str(2 * i + 1)} for i in range(6)]
    theirs = unpair_preference_dataset(datasets.Dataset.from_list(pairs)).to_list()
    ours = [{k: r[k] for k in ("prompt", "completion", "label")} for r in unpair(pairs)]
    assert ours == theirs
    model, tok = build_tiny_model(seed=0, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    args = KTOConfig(output_dir=str(tmp_path / "kto"), per_device_train_batch_size=3, report_to=[], use_cpu=True,
                     max_length=64, bf16=False)
    trainer = KTOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                         train_dataset=datasets.Dataset.from_list(theirs),
                         processing_class=tok)
    prepared = trainer.train_dataset.to_list()
    examples, stats = tokenize_unpaired(ours, tok, 64, kl_group=3)
    assert stats.dropped == {"prompt_too_long": 2}
    assert [ex["prompt_ids"] for ex in examples] == [r["prompt_ids"] for r in prepared]
    assert [ex["chosen_ids"] for ex in examples] == [r["completion_ids"] for r in prepared]
    assert [ex["rejected_ids"] for ex in examples] == [r["KL_completion_ids"] for r in prepared]
    assert [bool(ex["label"]) for ex in examples] == [r["label"] for r in prepared]


def test_loop_averages_a_metric_over_the_examples_it_covers(tmp_path):
    """KTO's rewards/chosen is the mean over desirable examples only (NaN marks the others), as TRL logs it."""
    from podium.training.loop import train_loop
    from podium.training.settings import TrainSettings

    model = torch.nn.Linear(1, 1)
    values = [1.0, float("nan"), 3.0, float("nan")]

    def objective(m, batch):
        x = torch.tensor([values[i] for i in batch["idx"]])
        return m.weight.sum() * 0 + torch.tensor(1.0), {"rewards/chosen": x, "always": torch.ones(len(x))}

    def collate(items):
        return {"idx": items, "count": len(items)}

    settings = TrainSettings(batch_size=2, gradient_accumulation_steps=2, max_steps=1, shuffle=False)
    train_loop(model, objective, [0, 1, 2, 3], collate, settings, tmp_path, show_progress=False,
               save_final=lambda m, d: None)
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["rewards/chosen"] == 2.0 and row["always"] == 1.0


def test_card_method_names_the_objective_the_combination_and_modifiers():
    assert stage_method("train", {"objective": "simpo"}).title == "Simple Preference Optimization (SimPO)"
    mpo = stage_method("train", {"objective": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]})
    assert mpo.title == "Mixed Preference Optimization (MPO): 0.8 × sigmoid + 0.2 × bco_pair + 1 × sft"
    assert "wang2024mpo" in mpo.citation and "jung2024bco" in mpo.citation and "mpo" in mpo.tags
    ld = stage_method("train", {"objective": "sigmoid", "ld_alpha": 0.5, "use_weighting": True})
    assert ld.title.endswith("with LD-DPO length desensitisation (α = 0.5), WPO pair weighting")
    assert "liu2024lddpo" in ld.citation and ld.key != stage_method("train", {"objective": "sigmoid"}).key
    # a selfplay stage is labelled by the objective its iterations train with
    assert stage_method("selfplay", {"objective": "sppo", "train": {"objective": "kto"}}).key == "kto"
    assert stage_method("selfplay", {"objective": "sppo"}).key == "sppo"


def test_selfplay_train_takes_any_pairwise_objective():
    from podium.selfplay.sppo import SelfPlayConfig, iteration_train_config

    def it(**train):
        return iteration_train_config(SelfPlayConfig.model_validate({"model": "m", "train": train}), "pi", "p", 1)

    assert it()["reference"] == "pi" and it()["beta"] == 0.001  # SPPO: pi_t is the reference, eta = 1/beta
    simpo = it(objective="simpo")
    assert "reference" not in simpo and "beta" not in simpo  # reference-free, and SimPO's own default beta
    assert it(objective="kto")["reference"] == "pi"
    with pytest.raises(ValidationError, match="reference-free"):
        SelfPlayConfig.model_validate({"model": "m", "train": {"objective": "orpo", "reference": "x"}})


LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("prefix_sharing, padding_free", LAYOUTS)
def test_prompt_log_probs_and_token_positions_in_every_layout(prefix_sharing, padding_free):
    """ORPO's prompt log-probs (`with_prompt`) and LD-DPO's per-token values equal a plain forward of each
    sequence alone, whatever the layout; the completions' log-probs are unchanged by `with_prompt`."""
    from tests.pref_helpers import TINY

    from podium.data.preference import tokenize_pairs
    from podium.losses import length_desensitized_logps
    from podium.models.tiny import build_tiny_model
    from podium.training.logps import pair_logps
    from podium.training.pair_layout import pack_pairs

    model, tok = build_tiny_model(seed=0, **TINY)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    B = len(examples)
    expected_prompt, expected_tokens = [], {}
    with torch.no_grad():
        for i, ex in enumerate(examples):
            for seg, side in ((i, "chosen_ids"), (B + i, "rejected_ids")):
                ids = torch.tensor([ex["prompt_ids"] + ex[side]])
                logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
                expected_tokens[seg] = logp[len(ex["prompt_ids"]) - 1:]
                if side == "chosen_ids":
                    expected_prompt.append(logp[:len(ex["prompt_ids"]) - 1].sum())
        plain = pair_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=prefix_sharing,
                                             padding_free=padding_free))
        out = pair_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=prefix_sharing,
                                           padding_free=padding_free, with_prompt=True))
    torch.testing.assert_close(out.prompt_logps, torch.stack(expected_prompt), rtol=1e-5, atol=1e-4)
    assert out.prompt_tokens.tolist() == [len(ex["prompt_ids"]) - 1 for ex in examples]
    torch.testing.assert_close(out.logps, plain.logps, rtol=1e-5, atol=1e-4)
    # LD-DPO: tokens past the pair's common length weigh alpha, from the flat token list of any layout
    alpha = 0.25
    want = []
    for seg in range(2 * B):
        i = seg % B
        m = min(len(examples[i]["chosen_ids"]), len(examples[i]["rejected_ids"]))
        t = expected_tokens[seg]
        want.append(t[:m].sum() + alpha * t[m:].sum())
    mask = out.token_seg < 2 * B
    got = length_desensitized_logps(out.token_logps[mask], out.token_seg[mask], B, alpha)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-4)


def test_compare_shows_each_objective_against_the_baseline_when_there_are_many():
    """With 24 objectives there are 300 pairwise differences between evaluations; compare.md shows the 24 gains
    over SFT (the task's first evaluation) and leaves the rest to compare.json."""
    from itertools import combinations

    from podium.cards.compare import compare_markdown, shown_differences

    evals = ["eval_sft"] + [f"eval_{i}" for i in range(24)]
    d = {"mean": 0.01, "low": 0.0, "high": 0.02, "half_width": 0.01, "n": 3, "std": 0.01, "excludes_zero": False,
         "values": [0.0, 0.01, 0.02], "metric": "accuracy", "kind": "eval"}
    group = {"label": "runs", "runs": ["a", "b", "c"], "seeds": [0, 1, 2], "metrics": [], "incomplete": [],
             "differences": [{**d, "stage": b, "minus": a} for a, b in combinations(evals, 2)]}
    shown, left = shown_differences(group)
    assert [x["stage"] for x in shown] == evals[1:] and {x["minus"] for x in shown} == {"eval_sft"}
    assert left == 300 - 24
    text = compare_markdown({"confidence": 0.95, "groups": [group], "between": []})
    assert "| eval_23 − eval_sft | accuracy |" in text and "eval_23 − eval_0" not in text and "276 differences" in text
    few = {**group, "differences": group["differences"][:3]}
    assert shown_differences(few) == (few["differences"], 0)
