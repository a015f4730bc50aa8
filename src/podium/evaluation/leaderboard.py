"""Open LLM Leaderboard aggregation of lm-eval results (v1 and v2), as `podium leaderboard` prints it.

v2 follows the leaderboard's results parser (HF docs, "Scores normalization"; the
`normalize_within_range` of its parser): a score v with a random baseline b is

    norm(v, b) = max(0, v - b) / (1 - b) * 100.

- BBH and MuSR: each subtask normalised by its own chance level b = 1/k, then averaged
  unweighted over subtasks.
- GPQA: lm-eval's `leaderboard_gpqa` group acc_norm (the sample-weighted mean of diamond,
  extended and main) normalised once with b = 1/4 — not the mean of normalised subtasks.
- MATH Lvl 5: lm-eval's `leaderboard_math_hard` group exact_match (sample-weighted over the
  seven subsets) x100, no baseline.
- MMLU-Pro: acc with b = 1/10. IFEval: mean of instance- and prompt-level strict accuracy x100.
The average is over the six benchmarks. When a results file lacks a group entry, the group
score is rebuilt from its subtasks as lm-eval does (`aggregate_subtask_metrics` with
`weight_by_size`): weighted by the `n-samples` counts the file reports, else by the subsets'
full sizes; `sources` in the result says which path each benchmark took.

v1 (Beeching et al. 2023): ARC acc_norm, HellaSwag acc_norm, MMLU acc (mean over the
57 subjects, as the v1 leaderboard did), TruthfulQA mc2, Winogrande acc, GSM8K exact
match (lm-eval's `strict-match` filter), all x100, averaged.
"""

from __future__ import annotations

import math
from pathlib import Path

from podium.errors import PodiumError
from podium.limits import read_json_bounded

# Number of answer choices per v2 subtask (lm-eval's leaderboard task YAMLs).
BBH_CHOICES = {
    "boolean_expressions": 2, "causal_judgement": 2, "date_understanding": 6, "disambiguation_qa": 3,
    "formal_fallacies": 2, "geometric_shapes": 11, "hyperbaton": 2, "logical_deduction_five_objects": 5,
    "logical_deduction_seven_objects": 7, "logical_deduction_three_objects": 3, "movie_recommendation": 6,
    "navigate": 2, "object_counting": 19, "penguins_in_a_table": 5, "reasoning_about_colored_objects": 18,
    "ruin_names": 6, "salient_translation_error_detection": 6, "snarks": 2, "sports_understanding": 2,
    "temporal_sequences": 4, "tracking_shuffled_objects_five_objects": 5,
    "tracking_shuffled_objects_seven_objects": 7, "tracking_shuffled_objects_three_objects": 3, "web_of_lies": 2,
}
MUSR_CHOICES = {"murder_mysteries": 2, "object_placements": 5, "team_allocation": 3}
# Full sizes of the subsets lm-eval weights its group scores by (`n-samples` "original").
GPQA_SIZES = {"leaderboard_gpqa_diamond": 198, "leaderboard_gpqa_extended": 546, "leaderboard_gpqa_main": 448}
MATH_HARD_SIZES = {  # MATH test problems of level 5, 1324 in all
    "leaderboard_math_algebra_hard": 307, "leaderboard_math_counting_and_prob_hard": 123,
    "leaderboard_math_geometry_hard": 132, "leaderboard_math_intermediate_algebra_hard": 280,
    "leaderboard_math_num_theory_hard": 154, "leaderboard_math_prealgebra_hard": 193,
    "leaderboard_math_precalculus_hard": 135,
}
MMLU_PRO_CHOICES = 10
MMLU_GROUPS = {"mmlu_humanities", "mmlu_other", "mmlu_social_sciences", "mmlu_stem"}

# Display names as the seed cards print them (the Open LLM Leaderboard's own labels).
LABELS = {
    "v1": {"arc": "AI2 Reasoning Challenge (25-Shot)", "hellaswag": "HellaSwag (10-Shot)",
           "mmlu": "MMLU (5-Shot)", "truthfulqa": "TruthfulQA (0-shot)", "winogrande": "Winogrande (5-shot)",
           "gsm8k": "GSM8k (5-shot)"},
    "v2": {"ifeval": "IFEval (0-Shot)", "bbh": "BBH (3-Shot)", "math_hard": "MATH Lvl 5 (4-Shot)",
           "gpqa": "GPQA (0-shot)", "musr": "MuSR (0-shot)", "mmlu_pro": "MMLU-PRO (5-shot)"},
}


def normalize(value: float, num_choices: int) -> float:
    """Leaderboard v2 normalisation: random baseline 1/k -> 0, perfect -> 100, clipped at 0."""
    lower = 1.0 / num_choices
    return max(0.0, value - lower) / (1.0 - lower) * 100.0


# The metrics the leaderboards read: all fractions in [0, 1] in lm-eval's results.
SCORED_METRICS = ("acc", "acc_norm", "exact_match", "mc2", "inst_level_strict_acc", "prompt_level_strict_acc")


def check_results(results, source: str = "results") -> None:
    """Refuse a results dict the leaderboard would misread: it must map task -> {metric: value}, and every value
    of a metric the leaderboards read must be a finite fraction in [0, 1] (lm-eval's scale). A NaN would
    become a score of 0.00 and a percentage (54.3 for 0.543) a score above 100, so both are errors naming
    the task and metric; nothing is rescaled by guessing."""
    if not isinstance(results, dict):
        raise PodiumError(f"{source}: `results` must map task names to their metrics, got {type(results).__name__}")
    for task, row in results.items():
        if not isinstance(row, dict):
            raise PodiumError(f"{source}: results[{task!r}] must be a mapping of metrics, got {type(row).__name__}")
        for key, value in row.items():
            if not isinstance(key, str) or key.split(",")[0] not in SCORED_METRICS:
                continue
            where = f"{source}: results[{task!r}][{key!r}]"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PodiumError(f"{where} = {value!r}: expected a number (a fraction in [0, 1])")
            if not math.isfinite(value):
                raise PodiumError(f"{where} = {value}: not a finite score (a failed evaluation?); podium does not "
                                  "score it as 0")
            if not 0 <= value <= 1:
                hint = (": it looks like a percentage, but lm-eval writes fractions; divide by 100"
                        if 1 < value <= 100 else "")
                raise PodiumError(f"{where} = {value}: outside [0, 1]{hint}")


def metric(results: dict, task: str, *names: str) -> float | None:
    """The first of `names` found for `task`, whether keyed lm-eval style (`acc,none`) or flat (`acc`)."""
    row = results.get(task)
    if not isinstance(row, dict):
        return None
    for name in names:
        for key in (f"{name},none", name):
            if isinstance(row.get(key), (int, float)):
                return float(row[key])
    return None


def mean_normalized(results: dict, prefix: str, choices: dict[str, int], name: str) -> float | None:
    scores = [normalize(v, k) for sub, k in choices.items()
              if (v := metric(results, f"{prefix}{sub}", name)) is not None]
    return sum(scores) / len(scores) if scores else None


def sample_count(n_samples: dict | None, task: str) -> int | None:
    """Documents lm-eval scored for `task` (`n-samples` "effective", else "original"), if the file says."""
    entry = (n_samples or {}).get(task)
    if isinstance(entry, dict):
        for key in ("effective", "original"):
            if isinstance(entry.get(key), int) and not isinstance(entry[key], bool) and entry[key] > 0:
                return entry[key]
    return None


def group_score(results: dict, group: str, sizes: dict[str, int], name: str,
                n_samples: dict | None = None) -> tuple[float | None, str | None]:
    """lm-eval's group score for `group`, or its sample-weighted rebuild from the subtasks -> (value, source).

    The rebuild is lm-eval's `aggregate_subtask_metrics(..., weight_by_size=True)`: Σ n_t v_t / Σ n_t over
    the subtasks present, n_t from `n_samples` where the file reports it, else the subset's full size.
    """
    if (v := metric(results, group, name)) is not None:
        return v, f"group {group} {name}"
    present = {t: v for t in sizes if (v := metric(results, t, name)) is not None}
    if not present:
        return None, None
    counts = {t: sample_count(n_samples, t) for t in present}
    reported = all(c is not None for c in counts.values())
    weights = {t: counts[t] if reported else sizes[t] for t in present}
    value = sum(weights[t] * present[t] for t in present) / sum(weights.values())
    how = "n-samples" if reported else "full subset sizes"
    return value, f"subtasks weighted by {how} ({group} absent)"


def v2_scores(results: dict, n_samples: dict | None = None) -> tuple[dict[str, float | None], dict[str, str]]:
    """The six v2 benchmark scores (0-100) from an lm-eval `results` dict (None where absent),
    and for GPQA and MATH the path each took (`group_score`). `n_samples`: lm-eval's `n-samples`."""
    inst = metric(results, "leaderboard_ifeval", "inst_level_strict_acc")
    prompt = metric(results, "leaderboard_ifeval", "prompt_level_strict_acc")
    ifeval = (inst + prompt) / 2 * 100 if inst is not None and prompt is not None else None

    math, math_source = group_score(results, "leaderboard_math_hard", MATH_HARD_SIZES, "exact_match", n_samples)
    gpqa, gpqa_source = group_score(results, "leaderboard_gpqa", GPQA_SIZES, "acc_norm", n_samples)
    mmlu_pro = metric(results, "leaderboard_mmlu_pro", "acc")
    scores = {
        "ifeval": ifeval,
        "bbh": mean_normalized(results, "leaderboard_bbh_", BBH_CHOICES, "acc_norm"),
        "math_hard": None if math is None else math * 100,
        "gpqa": None if gpqa is None else normalize(gpqa, 4),
        "musr": mean_normalized(results, "leaderboard_musr_", MUSR_CHOICES, "acc_norm"),
        "mmlu_pro": normalize(mmlu_pro, MMLU_PRO_CHOICES) if mmlu_pro is not None else None,
    }
    sources = {k: v for k, v in (("math_hard", math_source), ("gpqa", gpqa_source)) if v is not None}
    return scores, sources


def v1_scores(results: dict) -> dict[str, float | None]:
    """The six v1 benchmark scores (0-100) from an lm-eval `results` dict; None where absent."""
    subjects = [v for task in results if task.startswith("mmlu_") and task not in MMLU_GROUPS
                if (v := metric(results, task, "acc")) is not None]
    mmlu = sum(subjects) / len(subjects) if subjects else metric(results, "mmlu", "acc")
    raw = {
        "arc": metric(results, "arc_challenge", "acc_norm"),
        "hellaswag": metric(results, "hellaswag", "acc_norm"),
        "mmlu": mmlu,
        "truthfulqa": metric(results, "truthfulqa_mc2", "acc", "mc2"),
        "winogrande": metric(results, "winogrande", "acc"),
        "gsm8k": metric(results, "gsm8k", "exact_match,strict-match", "exact_match", "acc"),
    }
    return {k: None if v is None else v * 100 for k, v in raw.items()}


def missing_subtasks(results: dict) -> dict[str, list[str]]:
    """v2 benchmarks scored from only some of their subtasks -> the absent subtask names.

    GPQA and MATH count only when their group entry is absent (lm-eval's group score stands as it is).
    """
    groups = {
        "bbh": [f"leaderboard_bbh_{s}" for s in BBH_CHOICES],
        "musr": [f"leaderboard_musr_{s}" for s in MUSR_CHOICES],
    }
    if "leaderboard_math_hard" not in results:
        groups["math_hard"] = list(MATH_HARD_SIZES)
    if "leaderboard_gpqa" not in results:
        groups["gpqa"] = list(GPQA_SIZES)
    out = {}
    for name, tasks in groups.items():
        absent = [t for t in tasks if t not in results]
        if 0 < len(absent) < len(tasks):
            out[name] = absent
    return out


def leaderboard(results: dict, version: str, n_samples: dict | None = None, source: str = "results") -> dict:
    """`{"average", "tasks": {name: score}}`, plus `missing` (benchmarks without any score; then the
    average is None) and, for v2, `sources` (where GPQA's and MATH's scores came from) and `partial`
    (benchmark -> subtasks absent from the score). `n_samples`: lm-eval's `n-samples` entry, if any.
    The scores read are checked first (`check_results`; `source` names the file in its errors)."""
    if version not in ("v1", "v2"):
        raise PodiumError(f"--version {version!r}: use v1 or v2")
    check_results(results, source)
    sources: dict[str, str] = {}
    if version == "v2":
        scores, sources = v2_scores(results, n_samples)
    else:
        scores = v1_scores(results)
    present = {k: v for k, v in scores.items() if v is not None}
    missing = [k for k, v in scores.items() if v is None]
    average = sum(present.values()) / len(present) if present and not missing else None
    out = {"average": average, "tasks": present}
    if missing:
        out["missing"] = missing
    if sources:
        out["sources"] = sources
    partial = missing_subtasks(results) if version == "v2" else {}
    if partial:
        out["partial"] = partial
    return out


def format_table(board: dict, version: str) -> str:
    """The Markdown table the Open LLM Leaderboard puts in model cards (`|Metric|Value|`)."""
    labels = LABELS[version]
    rows = [("Avg.", board["average"])] + [(labels[k], board["tasks"].get(k)) for k in labels]
    width = max(len(r[0]) for r in rows)
    cells = [(name, "n/a" if v is None else f"{v:.2f}") for name, v in rows]
    vwidth = max(5, *(len(c[1]) for c in cells))
    lines = [f"|{'Metric':^{width}}|{'Value':^{vwidth}}|", f"|{'-' * width}|{'-' * (vwidth - 1)}:|"]
    lines += [f"|{name:<{width}}|{v:>{vwidth}}|" for name, v in cells]
    return "\n".join(lines)


def load_results(path: str | Path) -> dict:
    """`{"results": ..., "n_samples": ...}` from lm-eval's results JSON (its `results` and `n-samples`),
    podium eval output (`tasks`), or a bare results dict (then `n_samples` is empty)."""
    data = read_json_bounded(path, what="results file")
    if not isinstance(data, dict):
        raise PodiumError(f"{path}: expected a JSON object with a `results` dict")
    counts = data.get("n-samples")
    results = data["results"] if "results" in data else data["tasks"] if "tasks" in data else data
    check_results(results, str(path))
    return {"results": results, "n_samples": counts if isinstance(counts, dict) else {}}
