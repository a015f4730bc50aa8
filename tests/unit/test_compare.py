"""compare_runs / write_compare on run dirs laid out as the pipeline writes them (report.json + stage.json)."""

import json

import pytest

from podium.cards.compare import compare_runs, expand_run_dirs, write_compare
from podium.errors import PodiumError

EVAL = {"task": "arithmetic", "count": 500, "difficulty": {"max_digits": 2}, "seed": 0, "batch_size": 64}
# Per seed: SFT accuracy, DPOP accuracy, self-play win rates of iterations 1 and 2.
SEEDS = {0: (0.30, 0.44, 0.57, 0.60), 1: (0.14, 0.25, 0.55, 0.58), 2: (0.20, 0.31, 0.56, 0.555)}


def write_run(root, seed, sft, dpop, w1, w2, *, extra=None):
    run = root / f"seed-{seed}"
    stages = [("sft", "sft", {"model": "x", "seed": seed}, {"train_loss": 0.1 * seed}),
              ("eval_sft", "eval", {**EVAL, "model": str(run / "sft")}, {"accuracy": sft, "accuracy/arithmetic": sft}),
              ("dpop", "train", {"model": "y", "seed": seed}, {"loss": 0.5}),
              ("eval_dpop", "eval", {**EVAL, "model": str(run / "dpop")}, {"accuracy": dpop}),
              ("eval_other", "eval", {**EVAL, "count": 50, "model": str(run / "dpop")}, {"accuracy": 0.5}),
              ("sppo", "selfplay", {"model": "z"}, {"iter1/win_rate": w1, "iter2/win_rate": w2, "win_rate": w2})]
    report = {"seed": seed, "stages": []}
    for name, kind, cfg, metrics in stages:
        (run / name).mkdir(parents=True)
        (run / name / "stage.json").write_text(json.dumps({"name": name, "kind": kind, "key": "k", "deps": [],
                                                           "config": cfg}))
        report["stages"].append({"name": name, "kind": kind, "status": "ran", "metrics": {**metrics, **(extra or {})}})
    (run / "report.json").write_text(json.dumps(report))
    return run


@pytest.fixture
def runs(tmp_path):
    return [write_run(tmp_path / "q", s, *v) for s, v in SEEDS.items()]


def test_metrics_and_paired_differences(runs, tmp_path):
    result = compare_runs([tmp_path / "q"])  # a folder of seed-N runs
    (group,) = result["groups"]
    assert group["seeds"] == [0, 1, 2]
    acc = next(m for m in group["metrics"] if (m["stage"], m["metric"]) == ("eval_dpop", "accuracy"))
    # accuracy/arithmetic repeats accuracy: shown once.
    assert not [m for m in group["metrics"] if m["metric"] == "accuracy/arithmetic"]
    assert acc["mean"] == pytest.approx(1.0 / 3) and acc["values"] == [0.44, 0.25, 0.31]
    diffs = {(d["stage"], d.get("minus", d.get("minus_metric")), d["metric"]): d for d in group["differences"]}
    # eval_other has another count: a different measurement, so it is not paired with the others.
    assert set(diffs) == {("eval_dpop", "eval_sft", "accuracy"), ("sppo", "iter1/win_rate", "iter2/win_rate")}
    d = diffs[("eval_dpop", "eval_sft", "accuracy")]
    # Worked in tests/unit/test_intervals.py: differences (0.14, 0.11, 0.11), mean 0.12, half-width 0.0430265.
    assert d["values"] == pytest.approx([0.14, 0.11, 0.11])
    assert d["mean"] == pytest.approx(0.12) and d["half_width"] == pytest.approx(0.0430265, abs=1e-6)
    assert d["excludes_zero"]
    w = diffs[("sppo", "iter1/win_rate", "iter2/win_rate")]
    assert w["values"] == pytest.approx([0.03, 0.03, -0.005]) and not w["excludes_zero"]


def test_written_files(runs, tmp_path):
    result = compare_runs(runs)
    paths = write_compare(result, tmp_path / "q")
    assert json.loads((tmp_path / "q" / "compare.json").read_text())["groups"][0]["seeds"] == [0, 1, 2]
    md = (tmp_path / "q" / "compare.md").read_text()
    assert "| eval_dpop − eval_sft | accuracy | 0.1200 ± 0.0430 [0.0770, 0.1630] | yes |" in md
    for name in ("compare_accuracy", "compare_win_rate", "compare_differences"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "q").glob("*.tmp"))


def test_between_groups_paired_by_seed_or_welch(runs, tmp_path):
    other = [write_run(tmp_path / "b", s, sft, dpop + 0.05, w1, w2) for s, (sft, dpop, w1, w2) in SEEDS.items()]
    result = compare_runs({"a": runs, "b": other})
    (between,) = result["between"]
    assert (between["group"], between["minus"]) == ("b", "a")
    d = next(x for x in between["differences"] if (x["stage"], x["metric"]) == ("eval_dpop", "accuracy"))
    assert d["method"] == "paired" and d["mean"] == pytest.approx(0.05) and d["half_width"] == pytest.approx(0.0, abs=1e-12)
    result = compare_runs({"a": runs, "b": other[:2]})
    d = next(x for x in result["between"][0]["differences"] if (x["stage"], x["metric"]) == ("eval_dpop", "accuracy"))
    assert d["method"] == "welch"


def test_not_a_run_dir(tmp_path):
    with pytest.raises(PodiumError, match="not a run dir"):
        expand_run_dirs([tmp_path])


def test_per_iteration_gains_are_shown_per_iteration_not_differenced_again(tmp_path):
    """iter{t}/gain already is iteration t minus t − 1: compare reports it across seeds in the stage table and does
    not subtract one iteration's gain from the next (a second difference that reads like a gain)."""
    gains = {"iter1/gain": 0.05, "iter2/gain": 0.01, "iter1/win_rate_vs_previous": 0.55, "iter2/win_rate_vs_previous": 0.51}
    for s, v in SEEDS.items():
        write_run(tmp_path / "q", s, *v, extra=gains)
    (group,) = compare_runs([tmp_path / "q"])["groups"]
    iteration = {d["metric"] for d in group["differences"] if d.get("kind") == "iteration"}
    assert "iter2/win_rate" in iteration
    assert not iteration & set(gains)
    assert {m["metric"] for m in group["metrics"] if m["stage"] == "sppo"} >= set(gains)
