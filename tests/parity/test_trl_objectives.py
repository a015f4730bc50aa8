"""Every offline preference objective against TRL 1.16 itself, on the five seed-card families.

For each family (tests/parity/families.py: Llama-3, Qwen2, Mistral, Mixtral, Gemma-2) the first-step loss,
the chosen/rejected log-probs and rewards (and KTO's KL, CPO/ORPO's NLL, Mixtral's router loss) of podium's
objective equal those of TRL's trainer on the same batch of 16 examples:
- `DPOTrainer`: every `loss_type` (sigmoid, hinge, ipo, exo_pair, nca_pair, robust, bco_pair, sppo_hard, aot,
  aot_unpaired, apo_zero, apo_down, discopop, sft, sigmoid_norm), MPO's `[sigmoid, bco_pair, sft]` with
  `loss_weights`, `ld_alpha` (LD-DPO), `use_weighting` (WPO) and the three other f-divergences;
- `KTOTrainer`: `kto` (KL estimate from the batch's mismatched completions) and `apo_zero_unpaired`;
- `trl.experimental.cpo.CPOTrainer`: sigmoid (CPO), hinge, ipo, simpo (cpo_alpha 0: SimPO), CPO-SimPO with
  AlphaPO's alpha; `trl.experimental.orpo.ORPOTrainer`: ORPO.
podium runs with its speed features on: prefix sharing, with and without padding-free packing, and reference
log-probs from its on-disk cache (reference-free objectives get none). One TRL trainer per family and trainer
kind is built once and re-configured per case with the attributes its `__init__` derives from its config, so the
whole table costs seconds. Each case also checks that its distinguishing term moves the loss (a path that fell
back to plain DPO, or dropped the modifier, would fail).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from tests.parity.families import FAMILIES, MAX_LENGTH, PAIRS, as_conversation, build_family

from podium.data.preference import tokenize_pairs
from podium.data.unpaired import tokenize_unpaired
from podium.losses import LOSS_SPECS, length_desensitized_reference
from podium.training.attention_masks import exact_layout
from podium.training.logps import pair_logps
from podium.training.pair_layout import pack_pairs
from podium.training.preference_inputs import common_length_examples
from podium.training.preference_objective import PreferenceObjective, make_collate
from podium.training.reference import cached_reference_logps
from podium.training.router_loss import router_aux_coef

trl = pytest.importorskip("trl")
pytestmark = pytest.mark.parity
if trl.__version__ != "1.16.0":
    pytest.skip(f"parity is pinned to trl 1.16.0, found {trl.__version__}", allow_module_level=True)

BETA = 0.1
LAYOUTS = [(True, False), (True, True)]  # prefix sharing (two forwards), prefix sharing + padding-free packing
METRICS = ("loss", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "kl", "nll_loss",
           "aux_loss")
# 16 unpaired examples: every third one undesirable (its rejected response), the rest desirable.
UNPAIRED = [{"prompt": p["prompt"], "completion": p["chosen"] if i % 3 else p["rejected"], "label": bool(i % 3)}
            for i, p in enumerate(PAIRS)]

# (case, podium objective, podium settings, TRL loss_type, TRL config, the case whose loss it must differ from)
DPO_CASES = [
    ("sigmoid", "sigmoid", {}, ["sigmoid"], {}, None),
    ("dpo", "dpo", {}, ["sigmoid"], {}, None),
    ("hinge", "hinge", {}, ["hinge"], {}, "sigmoid"),
    ("ipo", "ipo", {}, ["ipo"], {}, "sigmoid"),
    ("exo_pair", "exo_pair", {"label_smoothing": 1e-3}, ["exo_pair"], {"label_smoothing": 1e-3}, "sigmoid"),
    ("nca_pair", "nca_pair", {}, ["nca_pair"], {}, "sigmoid"),
    ("robust", "robust", {"label_smoothing": 0.1}, ["robust"], {"label_smoothing": 0.1}, "sigmoid"),
    ("bco_pair", "bco_pair", {}, ["bco_pair"], {}, "sigmoid"),
    ("sppo_hard", "sppo_hard", {}, ["sppo_hard"], {}, "sigmoid"),
    ("cdpo", "dpo", {"label_smoothing": 0.1}, None, None, "sigmoid"),  # podium only: aot's unsorted twin
    ("aot", "aot", {"label_smoothing": 0.1}, ["aot"], {"label_smoothing": 0.1}, "cdpo"),
    ("aot_unpaired", "aot_unpaired", {}, ["aot_unpaired"], {}, "sigmoid"),
    ("apo_zero", "apo_zero", {}, ["apo_zero"], {}, "sigmoid"),
    ("apo_down", "apo_down", {}, ["apo_down"], {}, "sigmoid"),
    ("discopop", "discopop", {}, ["discopop"], {}, "sigmoid"),
    ("sft", "sft", {}, ["sft"], {}, "sigmoid"),
    ("sigmoid_norm", "sigmoid_norm", {}, ["sigmoid_norm"], {}, "sigmoid"),
    ("mpo", ["sigmoid", "bco_pair", "sft"], {"loss_weights": [0.8, 0.2, 1.0]}, ["sigmoid", "bco_pair", "sft"],
     {"loss_weights": [0.8, 0.2, 1.0]}, "sigmoid"),
    ("ld_dpo", "sigmoid", {"ld_alpha": 0.5}, ["sigmoid"], {"ld_alpha": 0.5}, "sigmoid"),
    ("ld_rpo", ["sigmoid", "sft"], {"ld_alpha": 0.3}, ["sigmoid", "sft"], {"ld_alpha": 0.3}, "sigmoid"),
    ("wpo", "sigmoid", {"use_weighting": True}, ["sigmoid"], {"use_weighting": True}, "sigmoid"),
    ("forward_kl", "sigmoid", {"f_divergence_type": "forward_kl"}, ["sigmoid"], {"f_divergence_type": "forward_kl"},
     "sigmoid"),
    ("js", "hinge", {"f_divergence_type": "js_divergence"}, ["hinge"], {"f_divergence_type": "js_divergence"},
     "hinge"),
    ("alpha_div", "sigmoid", {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3}, ["sigmoid"],
     {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3}, "sigmoid"),
]
# (case, podium objective, podium settings, TRL CPO loss_type, TRL attributes, the case it must differ from)
CPO_CASES = [
    ("cpo_no_nll", "cpo", {"cpo_alpha": 0.0}, "sigmoid", {"cpo_alpha": 0.0}, None),
    ("cpo", "cpo", {}, "sigmoid", {"cpo_alpha": 1.0}, "cpo_no_nll"),
    ("cpo_hinge", "cpo_hinge", {}, "hinge", {"cpo_alpha": 1.0}, "cpo"),
    ("cpo_ipo", "cpo_ipo", {}, "ipo", {"cpo_alpha": 1.0}, "cpo"),
    ("simpo_no_margin", "simpo", {"simpo_gamma": 0.0}, "simpo", {"cpo_alpha": 0.0, "simpo_gamma": 0.0}, None),
    ("simpo", "simpo", {}, "simpo", {"cpo_alpha": 0.0}, "simpo_no_margin"),
    ("cpo_simpo_alphapo", "simpo", {"cpo_alpha": 0.5, "alphapo_alpha": 0.25}, "simpo",
     {"cpo_alpha": 0.5, "alpha": 0.25}, "simpo"),
]


@pytest.fixture(scope="module", autouse=True)
def quiet():
    """One intra-op thread (the models are tiny), no progress bars."""
    import datasets

    datasets.disable_progress_bars()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def models(family: str):
    policy, tok = build_family(family, seed=0)
    ref, _ = build_family(family, seed=1, tokenizer=tok)
    return policy, ref, tok


def podium_step(policy, tok, examples, ref_logps, objective, layout, ld_ref=None, **settings) -> dict:
    """podium's first-step metrics (batch means; NaN entries left out as the loop leaves them out)."""
    spec = [LOSS_SPECS[n] for n in ([objective] if isinstance(objective, str) else objective)]
    obj = PreferenceObjective(objective, beta=BETA, router_aux_loss_coef=router_aux_coef(policy), **settings)
    collate = make_collate(tok.pad_token_id, ref_logps, prefix_sharing=layout[0], padding_free=layout[1],
                           with_prompt=obj.with_prompt, unpaired=any(s.unpaired for s in spec),
                           ld_reference_logps=ld_ref)
    with torch.no_grad():
        loss_sum, metrics = obj(policy, collate(examples))
    return {"loss": loss_sum.item() / len(examples), **{k: metrics[k].nanmean().item() for k in METRICS[1:]
                                                        if k in metrics}}


def assert_matches(ours: dict, theirs: dict, case: str, skip=()):
    for key, value in theirs.items():
        if key not in METRICS or key in skip:
            continue
        assert key in ours, f"{case}: podium logs no {key}"
        # Rewards are beta x a difference of two ~50-nat sums: compare them absolutely.
        tol = {"abs": 1e-5} if key.startswith("rewards/") or key == "kl" else {"rel": 1e-5}
        assert ours[key] == pytest.approx(value, **tol), f"{case}: {key}"


def distinct(a: float, b: float) -> bool:
    """Apart by 10x the parity tolerance: a path that dropped the term would agree to ~1e-6."""
    return abs(a - b) > 1e-4 * max(abs(a), abs(b))


def layouts_for(policy):
    out = []
    for ps, pf in LAYOUTS:
        layout = exact_layout(policy, ps, pf, None)
        assert layout[0], "prefix sharing stays on for every seed family"
        out.append(layout)
    return list(dict.fromkeys(out))


# --- DPOTrainer: the loss types, MPO, LD-DPO, WPO, f-DPO --------------------------------------------------------

def trl_dpo_trainer(policy, ref, tok, out_dir, rows=PAIRS):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    # use_weighting: the fused LM head then also returns WPO's log sum p^2 (harmless for the other cases)
    args = DPOConfig(output_dir=str(out_dir), per_device_train_batch_size=len(PAIRS), report_to=[], use_cpu=True,
                     max_length=MAX_LENGTH, bf16=False, use_weighting=True)
    trainer = DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    return trainer, next(iter(trainer.get_train_dataloader()))


def trl_dpo_step(trainer, batch, loss_type, **config) -> dict:
    """TRL's loss and logged metrics for `loss_type` and `config`, set as `DPOTrainer.__init__` sets them."""
    from trl import DPOConfig

    fields = DPOConfig.__dataclass_fields__
    a = SimpleNamespace(**{k: config.get(k, fields[k].default) for k in (
        "beta", "loss_weights", "ld_alpha", "f_divergence_type", "f_alpha_divergence_coef", "label_smoothing",
        "use_weighting", "discopop_tau")})
    trainer.beta, trainer.loss_types = BETA, loss_type
    trainer.loss_weights = a.loss_weights or [1.0] * len(loss_type)
    trainer.ld_alpha, trainer.label_smoothing, trainer.use_weighting = a.ld_alpha, a.label_smoothing, a.use_weighting
    trainer.f_divergence_type, trainer.f_alpha_divergence_coef = a.f_divergence_type, a.f_alpha_divergence_coef
    trainer.args.discopop_tau = a.discopop_tau
    mode = "train" if trainer.model.training else "eval"
    trainer._metrics[mode].clear()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return {"loss": loss.item(), **{k: v[-1] for k, v in trainer._metrics[mode].items()}}


@pytest.mark.parametrize("family", FAMILIES)
def test_dpo_loss_family_equals_trl(family, tmp_path):
    policy, ref, tok = models(family)
    examples, _ = tokenize_pairs(PAIRS, tok, MAX_LENGTH)
    cache = tmp_path / "cache"
    # The reference passes as the train stage runs them: cached, then read back (a warm run equals a cold one).
    ref_logps, _ = cached_reference_logps(ref, examples, tok.pad_token_id, cache_dir=cache, batch_size=len(PAIRS))
    shared, _ = cached_reference_logps(ref, common_length_examples(examples), tok.pad_token_id, cache_dir=cache,
                                       batch_size=len(PAIRS))
    again, hit = cached_reference_logps(ref, examples, tok.pad_token_id, cache_dir=cache, batch_size=len(PAIRS))
    assert hit and torch.equal(again, ref_logps)
    trainer, batch = trl_dpo_trainer(policy, ref, tok, tmp_path / "trl")
    for layout in layouts_for(policy):
        losses = {}
        for case, objective, settings, loss_type, config, differs_from in DPO_CASES:
            ld = settings.get("ld_alpha")
            ld_ref = length_desensitized_reference(ref_logps, shared, ld) if ld is not None else None
            ours = podium_step(policy, tok, examples, ref_logps, objective, layout, ld_ref, **settings)
            losses[case] = ours["loss"]
            if loss_type is not None:
                theirs = trl_dpo_step(trainer, batch, loss_type, **config)
                # TRL logs beta * rho for `sft` too; podium's sft reads no reference, so it has no rewards.
                skip = ("rewards/chosen", "rewards/rejected") if case == "sft" else ()
                assert_matches(ours, theirs, f"{family} {case} {layout}", skip)
                assert ("aux_loss" in theirs) == (family == "mixtral")
            if differs_from is not None:
                assert distinct(ours["loss"], losses[differs_from]), f"{case}'s own term does not move the loss"


# --- KTOTrainer: unpaired data, the KL estimate ---------------------------------------------------------------

def kto_roles(a, b, tok, examples):
    """(policy, reference) ordered so that the batch's KL estimate is positive: clamped at 0 it would leave KTO
    equal to unpaired APO-zero, and the test could not tell whether the KL term is there."""
    packed = pack_pairs(examples, tok.pad_token_id)
    with torch.no_grad():
        kl = (pair_logps(a, packed).logps - pair_logps(b, packed).logps)[len(examples):].mean()
    return (a, b) if kl > 0 else (b, a)


@pytest.mark.parametrize("family", FAMILIES)
def test_kto_equals_trl(family, tmp_path):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    a, b, tok = models(family)
    examples, _ = tokenize_unpaired(UNPAIRED, tok, MAX_LENGTH, kl_group=len(UNPAIRED))
    policy, ref = kto_roles(a, b, tok, examples)
    args = KTOConfig(output_dir=str(tmp_path / "kto"), per_device_train_batch_size=len(UNPAIRED), report_to=[],
                     use_cpu=True, max_length=MAX_LENGTH, bf16=False)
    trainer = KTOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref), args=args,
                         train_dataset=Dataset.from_list(UNPAIRED), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    no_kl, _ = tokenize_unpaired(UNPAIRED, tok, MAX_LENGTH, kl_group=None)
    for layout in layouts_for(policy):
        losses = {}
        for loss_type, data in (("kto", examples), ("apo_zero_unpaired", no_kl)):
            ref_logps, _ = cached_reference_logps(ref, data, tok.pad_token_id, cache_dir=tmp_path / "cache",
                                                  batch_size=len(data))
            ours = podium_step(policy, tok, data, ref_logps, loss_type, layout)
            trainer.loss_type = loss_type
            mode = "train" if trainer.model.training else "eval"
            trainer._metrics[mode].clear()
            with torch.no_grad():
                loss = trainer.compute_loss(trainer.model, batch)
            theirs = {"loss": loss.item(), **{k: v[-1] for k, v in trainer._metrics[mode].items()}}
            # TRL computes (and logs) the KL estimate for apo_zero_unpaired too, but does not use it.
            assert_matches(ours, theirs, f"{family} {loss_type} {layout}", skip=("kl",) if loss_type != "kto" else ())
            losses[loss_type] = ours["loss"]
        assert theirs["kl"] > 0
        assert distinct(losses["kto"], losses["apo_zero_unpaired"]), "the KL reference point does not move KTO's loss"


# --- CPO (and SimPO, AlphaPO) and ORPO: no reference model ----------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_cpo_simpo_orpo_equal_trl(family, tmp_path):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    policy, _, tok = models(family)
    examples, _ = tokenize_pairs(PAIRS, tok, MAX_LENGTH)
    trl_policy = copy.deepcopy(policy)
    if family == "mixtral":  # TRL's CPO and ORPO add the router loss when the config returns router logits
        trl_policy.config.output_router_logits = True
    common = dict(per_device_train_batch_size=len(PAIRS), report_to=[], use_cpu=True, max_length=MAX_LENGTH,
                  bf16=False)
    cpo = CPOTrainer(model=trl_policy, args=CPOConfig(output_dir=str(tmp_path / "cpo"), **common),
                     train_dataset=Dataset.from_list(PAIRS), processing_class=tok)
    cpo_batch = next(iter(cpo.get_train_dataloader()))
    orpo = ORPOTrainer(model=copy.deepcopy(trl_policy), args=ORPOConfig(output_dir=str(tmp_path / "orpo"), **common),
                       train_dataset=Dataset.from_list(PAIRS), processing_class=tok)
    orpo_batch = next(iter(orpo.get_train_dataloader()))

    def trl_step(trainer, batch):
        trainer._stored_metrics.clear()
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, batch)
        return {"loss": loss.item(), **{k: v[-1] for k, v in trainer._stored_metrics["train"].items()}}

    for layout in layouts_for(policy):
        losses = {}
        for case, objective, settings, loss_type, attributes, differs_from in CPO_CASES:
            assert LOSS_SPECS[objective].reference_free
            ours = podium_step(policy, tok, examples, None, objective, layout, **settings)
            cpo.loss_type, cpo.beta, cpo.label_smoothing, cpo.simpo_gamma, cpo.alpha = loss_type, BETA, 0.0, 0.5, 0.0
            for k, v in attributes.items():
                setattr(cpo, k, v)
            theirs = trl_step(cpo, cpo_batch)
            # TRL logs nll_loss 0 when cpo_alpha is 0; podium logs the NLL it would add.
            skip = ("nll_loss",) if not attributes.get("cpo_alpha") else ()
            assert_matches(ours, theirs, f"{family} {case} {layout}", skip)
            losses[case] = ours["loss"]
            if differs_from is not None:
                assert distinct(ours["loss"], losses[differs_from]), f"{case}'s own term does not move the loss"
        ours = podium_step(policy, tok, examples, None, "orpo", layout)
        theirs = trl_step(orpo, orpo_batch)
        assert_matches(ours, theirs, f"{family} orpo {layout}")
        # ORPO's NLL covers the prompt too (TRL's convention): it differs from the completion-only NLL of CPO.
        assert distinct(ours["nll_loss"], podium_step(policy, tok, examples, None, "cpo", layout)["nll_loss"])


# --- the same through `podium train` from saved folders -------------------------------------------------------

def test_train_stage_first_step_equals_trl(tmp_path):
    """`podium train` on files (KTO: TRL's unpaired format), as a user runs it: the first row of metrics.jsonl
    equals TRL's first step for KTO, SimPO, ORPO, MPO and LD-DPO (Llama-3 family). The stage renders string
    records with the tokenizer's chat template (podium.data.rendering), as TRL renders them given as conversations."""
    import json

    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from podium.models.io import save_model
    from podium.stages import run_stage

    policy, ref, tok = models("llama3")
    save_model(policy, tok, tmp_path / "policy")
    save_model(ref, tok, tmp_path / "ref")
    for name, rows in (("pairs", PAIRS), ("unpaired", UNPAIRED)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def podium_row(name, data="pairs", **cfg):
        run_stage("train", {"model": str(tmp_path / "policy"), "data": str(tmp_path / f"{data}.jsonl"),
                            "batch_size": len(PAIRS), "max_steps": 1, "max_length": MAX_LENGTH,
                            "reference_cache_dir": str(tmp_path / "cache"), **cfg}, tmp_path / name)
        (row,) = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return row

    common = dict(per_device_train_batch_size=len(PAIRS), report_to=[], use_cpu=True, max_length=MAX_LENGTH,
                  bf16=False)
    assert tok.chat_template
    conversations, unpaired_conversations = [as_conversation(r) for r in PAIRS], [as_conversation(r) for r in UNPAIRED]
    trainer, batch = trl_dpo_trainer(policy, ref, tok, tmp_path / "trl", rows=conversations)
    reference = {"reference": str(tmp_path / "ref")}
    for name, cfg, loss_type, config in [
        ("mpo", {"objective": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]},
         ["sigmoid", "bco_pair", "sft"], {"loss_weights": [0.8, 0.2, 1.0]}),
        ("ld", {"objective": "sigmoid", "ld_alpha": 0.5}, ["sigmoid"], {"ld_alpha": 0.5}),
    ]:
        assert_matches(podium_row(name, **cfg, **reference), trl_dpo_step(trainer, batch, loss_type, **config), name)

    kto = KTOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref),
                     args=KTOConfig(output_dir=str(tmp_path / "kto"), **common),
                     train_dataset=Dataset.from_list(unpaired_conversations), processing_class=tok)
    with torch.no_grad():
        loss = kto.compute_loss(kto.model, next(iter(kto.get_train_dataloader())))
    theirs = {"loss": loss.item(), **{k: v[-1] for k, v in kto._metrics["train" if kto.model.training else "eval"].items()}}
    assert_matches(podium_row("kto", "unpaired", objective="kto", **reference), theirs, "kto")

    entries = sorted((tmp_path / "cache").glob("*"))
    for name, trainer_cls, config_cls, extra in (("simpo", CPOTrainer, CPOConfig, {"loss_type": "simpo",
                                                                                     "cpo_alpha": 0.0}),
                                                 ("orpo", ORPOTrainer, ORPOConfig, {})):
        t = trainer_cls(model=copy.deepcopy(policy), args=config_cls(output_dir=str(tmp_path / name), **common, **extra),
                        train_dataset=Dataset.from_list(conversations), processing_class=tok)
        with torch.no_grad():
            loss = t.compute_loss(t.model, next(iter(t.get_train_dataloader())))
        theirs = {"loss": loss.item(), **{k: v[-1] for k, v in t._stored_metrics["train"].items()}}
        assert_matches(podium_row(name, objective=name), theirs, name, skip=("nll_loss",))
    assert sorted((tmp_path / "cache").glob("*")) == entries  # reference-free: no reference pass, no cache entry
