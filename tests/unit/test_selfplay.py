"""The self-play stage end to end on tiny models: GPO with a GPM judge, SPPO with the verifier."""

import pytest
import torch

from podium.errors import DataError
from podium.files import read_jsonl
from podium.stages import run_stage


@pytest.fixture(scope="module")
def gpm_dir(tiny_dir, tmp_path_factory):
    from transformers import AutoModel

    from podium.models.heads import build_preference_model
    from podium.models.io import load_tokenizer, save_model

    torch.manual_seed(0)
    model = build_preference_model("gpm", AutoModel.from_pretrained(tiny_dir), k=2)
    path = tmp_path_factory.mktemp("gpm") / "model"
    save_model(model, load_tokenizer(tiny_dir), path)
    return path


def selfplay(tiny_dir, out, **kw):
    cfg = {"model": str(tiny_dir), "task": "arithmetic", "count": 8, "iterations": 2, "num_samples": 3,
           "max_new_tokens": 6, "eval_count": 4, "train": {"batch_size": 2, "learning_rate": 1e-3, "max_length": 64}}
    return run_stage("selfplay", {**cfg, **kw}, out)


def test_gpo_with_gpm_judge(tiny_dir, gpm_dir, tmp_path):
    m = selfplay(tiny_dir, tmp_path, judge={"kind": "gpm", "model": str(gpm_dir)}, objective="gpo")
    assert m["iter1/pairs"] == 4 and m["iter2/pairs"] == 4  # a GPM always prefers one of 3 sampled texts
    pairs = read_jsonl(tmp_path / "iter1" / "pairs.jsonl")
    assert all(p["chosen_prob"] > p["rejected_prob"] and p["chosen_score"] > p["rejected_score"] for p in pairs)
    assert (tmp_path / "model.safetensors").exists()
    # The win rate is the judge's mean P(new ≻ baseline) over the saved greedy answers, derived here.
    from podium.judging.build import JudgeSpec, build_judge

    judge = build_judge(JudgeSpec(kind="gpm", model=str(gpm_dir)))
    new, base = (read_jsonl(tmp_path / d / "samples.jsonl") for d in ("iter2/eval", "baseline_eval"))
    probs = [float(judge.judge(a["prompt"], [a["responses"][0], b["responses"][0]]).matrix[0, 1])
             for a, b in zip(new, base) if a["responses"][0].strip() and b["responses"][0].strip()]
    assert probs and m["win_rate"] == pytest.approx(sum(probs) / len(probs), abs=1e-6)
    # Iteration 2 sampled from iteration 1's model and used it as the reference.
    gen = read_jsonl(tmp_path / "iter2" / "generate" / "samples.jsonl")[0]["generator"]
    assert gen["model"] == str(tmp_path / "iter1" / "model")


def test_verifier_judge_without_mixed_outcomes_is_a_clear_error(tiny_dir, tmp_path):
    # An untrained model answers nothing right: every prompt is a tie under the verifier.
    with pytest.raises(DataError, match="preferred no response"):
        selfplay(tiny_dir, tmp_path, judge={"kind": "verifier"}, objective="sppo", iterations=1)


def test_resume_skips_finished_iterations(tiny_dir, gpm_dir, tmp_path):
    judge = {"kind": "gpm", "model": str(gpm_dir)}
    first = selfplay(tiny_dir, tmp_path, judge=judge, objective="sppo")
    (tmp_path / "iter2" / "done.json").unlink()
    marker = tmp_path / "iter1" / "pairs.jsonl"
    before = marker.stat().st_mtime_ns
    again = selfplay(tiny_dir, tmp_path, judge=judge, objective="sppo")
    assert marker.stat().st_mtime_ns == before  # iteration 1 was not redone
    assert again["iter1/win_rate"] == first["iter1/win_rate"]
