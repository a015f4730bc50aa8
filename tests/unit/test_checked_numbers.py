"""Numbers are checked where they are made (issue 26, item 4).

The probes: a merge with weight `.nan`, or weights 0, 0 with `normalize`, published an all-NaN model with
exit code 0 (and eval scored it); a missing `lm_head` was silently random-initialised; `podium leaderboard`
turned NaN into 0.00 and percent-scaled inputs into 10544.44; `podium compare A A A` reported three runs
with a zero-width interval, and a run written into DIR/seed-1 with seed 0 was labelled seed 1;
`num_key_value_heads` > `num_attention_heads`, tensor shapes that contradict config.json and token ids
above the embedding ended in tracebacks.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from podium.cards.compare import compare_runs
from podium.cli import main
from podium.errors import PodiumError
from podium.models.io import load_model, save_model
from podium.models.tiny import build_tiny_model
from podium.stages import run_stage


@pytest.fixture
def model_copy(tiny_dir, tmp_path):
    def copy(name: str = "m"):
        out = tmp_path / name
        shutil.copytree(tiny_dir, out)
        return out
    return copy


def edit_weights(folder, fn):
    weights = load_file(str(folder / "model.safetensors"))
    fn(weights)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})


def edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def merge_config(tmp_path, a, b, wa, wb, extra=""):
    cfg = tmp_path / "m.yml"
    cfg.write_text(f"merge_method: linear\nmodels:\n  - {{model: {a}, parameters: {{weight: {wa}}}}}\n"
                   f"  - {{model: {b}, parameters: {{weight: {wb}}}}}\ndtype: float32\n{extra}")
    return cfg


@pytest.mark.parametrize("wa,wb,message", [(".nan", "1", "not a finite number"), ("0", "0", "the weights sum to 0")])
def test_a_merge_that_would_publish_nan_is_refused(model_copy, tmp_path, capsys, wa, wb, message):
    cfg = merge_config(tmp_path, model_copy("a"), model_copy("b"), wa, wb)
    out = tmp_path / "out"
    assert main(["merge", str(cfg), str(out)]) != 0  # old code: 0, an all-NaN model
    assert message in capsys.readouterr().err and not (out / "model.safetensors").exists()


def test_a_nan_in_an_input_fails_the_merge_naming_the_tensor(model_copy, tmp_path, capsys):
    a, b = model_copy("a"), model_copy("b")
    edit_weights(b, lambda w: w["model.norm.weight"].fill_(float("nan")))
    out = tmp_path / "out"
    assert main(["merge", str(merge_config(tmp_path, a, b, 1, 1)), str(out)]) != 0
    assert "merged tensor model.norm.weight has NaN or infinite values" in capsys.readouterr().err
    assert not (out / "model.safetensors").exists()


def test_a_missing_lm_head_is_an_error_not_a_random_head(model_copy):
    m = model_copy()
    edit_weights(m, lambda w: w.pop("lm_head.weight"))
    with pytest.raises(PodiumError, match=r"weights 1 missing \(lm_head.weight\); transformers would initialise them "
                                          "at random"):
        load_model(m)


def test_a_nan_weight_is_refused_when_loaded_naming_it(model_copy):
    m = model_copy()
    edit_weights(m, lambda w: w["model.layers.0.mlp.up_proj.weight"].__setitem__((0, 0), float("inf")))
    with pytest.raises(PodiumError, match="weight model.layers.0.mlp.up_proj.weight holds NaN or infinite values"):
        load_model(m)


def test_a_diverged_model_is_not_saved(tmp_path):
    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    with pytest.raises(PodiumError, match="weight model.norm.weight holds NaN or infinite values"):
        save_model(model, tok, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_more_key_value_heads_than_attention_heads_is_named(model_copy):
    m = model_copy()
    edit_config(m, num_key_value_heads=4)  # num_attention_heads is 2
    with pytest.raises(PodiumError, match=r"config.json: `num_key_value_heads` = 4 must divide `num_attention_heads` = 2"):
        load_model(m)


def test_tensor_shapes_that_contradict_config_json_are_named(model_copy):
    m = model_copy()
    edit_config(m, intermediate_size=48)  # the stored MLP weights are 64 wide
    with pytest.raises(PodiumError, match=r"tensor model.layers.0.mlp.\w+_proj.weight has shape \[\d+, \d+\], "
                                          r"config.json gives"):
        load_model(m)


def test_token_ids_past_the_embedding_fail_before_generating(tmp_path):
    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    model.resize_token_embeddings(len(tok) - 8)
    save_model(model, tok, tmp_path / "m")
    (tmp_path / "p.jsonl").write_text('{"prompt": "zzz"}\n')
    with pytest.raises(PodiumError, match="the model's embedding has only"):
        run_stage("generate", {"model": str(tmp_path / "m"), "prompts": str(tmp_path / "p.jsonl"),
                               "max_new_tokens": 4}, tmp_path / "out")


V2 = {"leaderboard_mmlu_pro": {"acc,none": 0.37}, "leaderboard_ifeval": {"inst_level_strict_acc,none": 0.8,
                                                                         "prompt_level_strict_acc,none": 0.7}}


@pytest.mark.parametrize("change,message", [
    ({"leaderboard_mmlu_pro": {"acc,none": float("nan")}}, "not a finite score"),
    ({"leaderboard_mmlu_pro": {"acc,none": 37.0}}, "looks like a percentage"),
    ({"leaderboard_mmlu_pro": {"acc,none": "0.37"}}, "expected a number"),
    ({"leaderboard_mmlu_pro": {"acc,none": True}}, "expected a number"),
    ({"leaderboard_mmlu_pro": "x"}, "must be a mapping of metrics"),
])
def test_leaderboard_inputs_are_checked(tmp_path, capsys, change, message):
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"results": {**V2, **change}}))
    assert main(["leaderboard", str(p)]) == 2  # old code: NaN -> 0.00, 37 -> 4188.89
    err = capsys.readouterr().err
    assert message in err and str(p) in err and "leaderboard_mmlu_pro" in err


def test_leaderboard_results_that_are_not_a_mapping(tmp_path, capsys):
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"results": "x"}))
    assert main(["leaderboard", str(p)]) == 2  # old code: AttributeError traceback
    assert "`results` must map task names to their metrics" in capsys.readouterr().err


def write_run(folder, seed: int, accuracy: float):
    folder.mkdir(parents=True)
    (folder / "ev").mkdir()
    (folder / "ev" / "stage.json").write_text(json.dumps({"name": "ev", "kind": "eval", "key": "k", "deps": [],
                                                          "config": {"task": "arithmetic"}}))
    (folder / "report.json").write_text(json.dumps({"seed": seed, "stages": [
        {"name": "ev", "kind": "eval", "status": "ran", "seconds": 1.0, "metrics": {"accuracy": accuracy}}]}))
    return folder


def test_compare_refuses_the_same_run_twice(tmp_path, capsys):
    a = write_run(tmp_path / "a", 0, 0.5)
    assert main(["compare", str(a), str(a), str(a), "--output", str(tmp_path / "c"), "--no-plots"]) == 2
    assert "is given twice" in capsys.readouterr().err  # old code: n = 3, a zero-width interval


def test_compare_refuses_two_runs_of_one_seed_in_a_group(tmp_path):
    a, b = write_run(tmp_path / "a", 0, 0.5), write_run(tmp_path / "b", 0, 0.6)
    with pytest.raises(PodiumError, match="both ran seed 0"):
        compare_runs([a, b])


def test_compare_reads_the_seed_from_the_run_not_its_folder_name(tmp_path):
    root = tmp_path / "multi"
    write_run(root / "seed-1", 0, 0.5)  # written into seed-1 by `--output DIR/seed-1` with seed 0
    write_run(root / "seed-2", 2, 0.6)
    (group,) = compare_runs([root])["groups"]
    assert group["seeds"] == [0, 2]  # old code: [1, 2]
