"""Leaderboard v2 GPQA and MATH-hard from lm-eval's group scores, on results files shaped like lm-eval's.

Expected numbers are derived by hand (docstrings) or with the leaderboard parser's own formula,
`normalize_within_range(v, lower, 1) = clip(v - lower, 0) / (1 - lower) * 100` applied to
`results["leaderboard_gpqa"]["acc_norm,none"]` (lower 0.25) and to
`results["leaderboard_math_hard"]["exact_match,none"]` (lower 0), and lm-eval's own
`aggregate_subtask_metrics` for a group entry that is absent.
"""

import json

import pytest

from podium.cli.leaderboard import main
from podium.evaluation.leaderboard import GPQA_SIZES, MATH_HARD_SIZES, leaderboard

# Correct answers per subset (a model near chance on GPQA, weak on MATH).
GPQA_CORRECT = {"leaderboard_gpqa_diamond": 61, "leaderboard_gpqa_extended": 143, "leaderboard_gpqa_main": 107}
MATH_CORRECT = {
    "leaderboard_math_algebra_hard": 52, "leaderboard_math_counting_and_prob_hard": 14,
    "leaderboard_math_geometry_hard": 3, "leaderboard_math_intermediate_algebra_hard": 38,
    "leaderboard_math_num_theory_hard": 10, "leaderboard_math_prealgebra_hard": 12,
    "leaderboard_math_precalculus_hard": 11,
}


def leaderboard_normalize_within_range(value, lower_bound, higher_bound=1.0):
    """The Open LLM Leaderboard parser's normalisation, as published (clip at 0, scale to 100)."""
    return max(value - lower_bound, 0.0) / (higher_bound - lower_bound) * 100


def lm_eval_doc(gpqa_group: float | None, math_group: float | None, counts=None) -> dict:
    """A results file laid out as lm-eval 0.4 writes it: `results` holds groups and subtasks
    (value, stderr, alias), plus `groups`, `group_subtasks`, `n-samples`, `n-shot`, `versions`."""
    counts = counts or {}
    results, n_samples = {}, {}
    for task, correct in {**GPQA_CORRECT, **MATH_CORRECT}.items():
        size = {**GPQA_SIZES, **MATH_HARD_SIZES}[task]
        name = "acc_norm" if "gpqa" in task else "exact_match"
        v = correct / size
        results[task] = {"alias": f"  - {task}", f"{name},none": v, f"{name}_stderr,none": (v * (1 - v) / size) ** 0.5}
        if name == "acc_norm":
            results[task]["acc,none"] = v - 0.01  # lm-eval reports acc as well; the leaderboard uses acc_norm
        n_samples[task] = {"original": size, "effective": counts.get(task, size)}
    groups = {}
    if gpqa_group is not None:
        groups["leaderboard_gpqa"] = {"alias": " - leaderboard_gpqa", "acc_norm,none": gpqa_group,
                                      "acc_norm_stderr,none": 0.0127}
    if math_group is not None:
        groups["leaderboard_math_hard"] = {"alias": " - leaderboard_math_hard", "exact_match,none": math_group,
                                           "exact_match_stderr,none": 0.0083}
    results.update(groups)
    return {
        "results": dict(sorted(results.items())),
        "groups": groups,
        "group_subtasks": {"leaderboard_gpqa": list(GPQA_SIZES), "leaderboard_math_hard": list(MATH_HARD_SIZES)},
        "configs": {}, "versions": {t: 1.0 for t in results},
        "n-shot": {t: 0 if "gpqa" in t else 4 for t in results},
        "higher_is_better": {}, "n-samples": n_samples,
        "config": {"model": "hf", "model_args": "pretrained=org/model", "batch_size": "auto"},
    }


def test_gpqa_and_math_take_lm_eval_group_scores(tmp_path):
    """GPQA: group acc_norm = (61+143+107)/(198+546+448) = 311/1192 = 0.260906;
    normalised (0.260906-0.25)/0.75*100 = 1.4541. The old mean of clipped subtask scores:
    diamond 61/198 = 0.308081 -> 7.7441; extended 143/546 = 0.261905 -> 1.5873; main 107/448 = 0.238839 -> 0;
    mean 3.1105 — the file is built so that the two differ.
    MATH: group exact_match = 140/1324 = 0.105740 -> 10.5740; the unweighted subtask mean is
    (0.169381+0.113821+0.022727+0.135714+0.064935+0.062176+0.081481)/7 = 0.092891 -> 9.2891.
    """
    doc = lm_eval_doc(gpqa_group=311 / 1192, math_group=140 / 1324)
    src, out = tmp_path / "results_2026-01-01T00-00-00.json", tmp_path / "board.json"
    src.write_text(json.dumps(doc))
    main([str(src), "--output", str(out)])
    board = json.loads(out.read_text())
    expected_gpqa = leaderboard_normalize_within_range(doc["results"]["leaderboard_gpqa"]["acc_norm,none"], 0.25)
    expected_math = leaderboard_normalize_within_range(doc["results"]["leaderboard_math_hard"]["exact_match,none"], 0.0)
    assert board["tasks"]["gpqa"] == pytest.approx(expected_gpqa) == pytest.approx(1.4541, abs=1e-4)
    assert board["tasks"]["math_hard"] == pytest.approx(expected_math) == pytest.approx(10.5740, abs=1e-4)
    assert abs(board["tasks"]["gpqa"] - 3.1105) > 1.5 and abs(board["tasks"]["math_hard"] - 9.2891) > 1.2
    assert board["sources"] == {"gpqa": "group leaderboard_gpqa acc_norm",
                                "math_hard": "group leaderboard_math_hard exact_match"}
    assert "partial" not in board


def test_group_entry_is_taken_as_it_is():
    """The group score stands even where it disagrees with the subtasks (e.g. a --limit run)."""
    board = leaderboard(lm_eval_doc(gpqa_group=0.40, math_group=0.25)["results"], "v2")
    assert board["tasks"]["gpqa"] == pytest.approx(20.0)  # (0.40 - 0.25)/0.75
    assert board["tasks"]["math_hard"] == pytest.approx(25.0)


def test_absent_groups_are_rebuilt_like_lm_eval_with_real_sizes():
    """No group entries: the size-weighted mean over the subtasks, as lm-eval's own
    `aggregate_subtask_metrics(..., weight_by_size=True)` computes it with the real sizes."""
    from lm_eval.api.metrics import aggregate_subtask_metrics

    doc = lm_eval_doc(gpqa_group=None, math_group=None)
    board = leaderboard(doc["results"], "v2", doc["n-samples"])
    gpqa = aggregate_subtask_metrics([doc["results"][t]["acc_norm,none"] for t in GPQA_SIZES], list(GPQA_SIZES.values()))
    maths = aggregate_subtask_metrics([doc["results"][t]["exact_match,none"] for t in MATH_HARD_SIZES],
                                      list(MATH_HARD_SIZES.values()))
    assert board["tasks"]["gpqa"] == pytest.approx(leaderboard_normalize_within_range(gpqa, 0.25))
    assert board["tasks"]["math_hard"] == pytest.approx(100 * maths)
    assert board["tasks"]["gpqa"] == pytest.approx(1.4541, abs=1e-4)  # 311/1192, as with the group entry
    assert board["sources"]["gpqa"] == "subtasks weighted by n-samples (leaderboard_gpqa absent)"
    # Without n-samples (e.g. a bare results dict), the full subset sizes give the same weights.
    bare = leaderboard(doc["results"], "v2")
    assert bare["tasks"] == pytest.approx(board["tasks"])
    assert bare["sources"]["math_hard"] == "subtasks weighted by full subset sizes (leaderboard_math_hard absent)"


def test_absent_group_uses_the_effective_sample_counts():
    """A --limit run scored 50 diamond, 100 extended and 50 main questions: weights 50/100/50, so
    (50*0.308081 + 100*0.261905 + 50*0.238839)/200 = 0.267682 -> (0.017682/0.75)*100 = 2.3576."""
    from lm_eval.api.metrics import aggregate_subtask_metrics

    limited = {"leaderboard_gpqa_diamond": 50, "leaderboard_gpqa_extended": 100, "leaderboard_gpqa_main": 50}
    doc = lm_eval_doc(gpqa_group=None, math_group=None, counts=limited)
    board = leaderboard(doc["results"], "v2", doc["n-samples"])
    ref = aggregate_subtask_metrics([doc["results"][t]["acc_norm,none"] for t in GPQA_SIZES], list(limited.values()))
    assert board["tasks"]["gpqa"] == pytest.approx(leaderboard_normalize_within_range(ref, 0.25))
    assert board["tasks"]["gpqa"] == pytest.approx(2.3576, abs=1e-4)


def test_issue_15_worked_case():
    """A reconstruction of the issue's numbers from subtask accuracies (the issue gives only its results).
    GPQA diamond 0.179, extended 0.32, main 0.226:
      old podium: clip each, then mean: (0 + (0.07/0.75)*100 + 0)/3 = 9.3333/3 = 3.11;
      leaderboard: (198*0.179 + 546*0.32 + 448*0.226)/1192 = 311.41/1192 = 0.261250 -> 0.01125/0.75 = 1.50.
    MATH algebra 0.06, counting 0.05, geometry 0.02, intermediate 0.20, number theory 0.06,
    prealgebra 0.22, precalculus 0.04:
      old podium: unweighted mean 0.65/7 = 9.29;
      leaderboard: (18.42 + 6.15 + 2.64 + 56 + 9.24 + 42.46 + 5.4)/1324 = 140.31/1324 = 10.60.
    """
    gpqa = dict(zip(GPQA_SIZES, (0.179, 0.32, 0.226)))
    maths = dict(zip(MATH_HARD_SIZES, (0.06, 0.05, 0.02, 0.20, 0.06, 0.22, 0.04)))
    results = {**{t: {"acc_norm,none": v} for t, v in gpqa.items()}, **{t: {"exact_match,none": v} for t, v in maths.items()}}
    board = leaderboard(results, "v2")
    assert round(board["tasks"]["gpqa"], 2) == 1.50
    assert round(board["tasks"]["math_hard"], 2) == 10.60
    # And with lm-eval's group entries present (their values computed by hand above), the same numbers.
    results["leaderboard_gpqa"] = {"acc_norm,none": 311.41 / 1192}
    results["leaderboard_math_hard"] = {"exact_match,none": 140.31 / 1324}
    grouped = leaderboard(results, "v2")
    assert grouped["tasks"]["gpqa"] == pytest.approx(board["tasks"]["gpqa"])
    assert grouped["tasks"]["math_hard"] == pytest.approx(board["tasks"]["math_hard"])


def test_bbh_and_musr_keep_per_subtask_normalisation_even_with_group_entries():
    """MuSR group acc_norm 0.9 is ignored: murder k=2 0.6 -> 20, objects k=5 0.3 -> 12.5,
    team k=3 0.5 -> 25; mean 19.1667."""
    results = {"leaderboard_musr": {"acc_norm,none": 0.9},
               "leaderboard_musr_murder_mysteries": {"acc_norm,none": 0.6},
               "leaderboard_musr_object_placements": {"acc_norm,none": 0.3},
               "leaderboard_musr_team_allocation": {"acc_norm,none": 0.5}}
    assert leaderboard(results, "v2")["tasks"]["musr"] == pytest.approx(57.5 / 3)


def test_cli_says_which_path_it_took(tmp_path, capsys):
    doc = lm_eval_doc(gpqa_group=311 / 1192, math_group=None)
    src = tmp_path / "results.json"
    src.write_text(json.dumps(doc))
    main([str(src)])
    err = capsys.readouterr().err
    assert "gpqa: group leaderboard_gpqa acc_norm" in err
    assert "math_hard: subtasks weighted by n-samples (leaderboard_math_hard absent)" in err
