"""Open LLM Leaderboard aggregation of lm-eval results (v1 and v2), as `podium leaderboard` prints it.

v2 (HF docs, "Scores normalization"): a multiple-choice score with k choices is rescaled
so that random guessing is 0 and a perfect score 100,

    norm(v, k) = max(0, (v - 1/k) / (1 - 1/k)) * 100,

applied per subtask and averaged unweighted over subtasks (BBH, GPQA, MuSR). IFEval is
the mean of instance- and prompt-level strict accuracy, MATH Lvl 5 the raw exact match
(subtasks averaged unweighted), both x100. The average is over the six benchmarks.

v1 (Beeching et al. 2023): ARC acc_norm, HellaSwag acc_norm, MMLU acc (mean over the
57 subjects, as the v1 leaderboard did), TruthfulQA mc2, Winogrande acc, GSM8K exact
match (lm-eval's `strict-match` filter), all x100, averaged.
"""

from __future__ import annotations

import json
from pathlib import Path

from podium.errors import PodiumError

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
GPQA_CHOICES = {"diamond": 4, "extended": 4, "main": 4}
MATH_SUBTASKS = ["algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory",
                 "prealgebra", "precalculus"]
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
    return max(0.0, (value - lower) / (1.0 - lower)) * 100.0


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


def v2_scores(results: dict) -> dict[str, float | None]:
    """The six v2 benchmark scores (0-100) from an lm-eval `results` dict; None where absent."""
    inst = metric(results, "leaderboard_ifeval", "inst_level_strict_acc")
    prompt = metric(results, "leaderboard_ifeval", "prompt_level_strict_acc")
    ifeval = (inst + prompt) / 2 * 100 if inst is not None and prompt is not None else None

    maths = [v for s in MATH_SUBTASKS if (v := metric(results, f"leaderboard_math_{s}_hard", "exact_match")) is not None]
    math_hard = sum(maths) / len(maths) * 100 if maths else None
    if math_hard is None and (v := metric(results, "leaderboard_math_hard", "exact_match")) is not None:
        math_hard = v * 100

    gpqa = mean_normalized(results, "leaderboard_gpqa_", GPQA_CHOICES, "acc_norm")
    if gpqa is None and (v := metric(results, "leaderboard_gpqa", "acc_norm")) is not None:
        gpqa = normalize(v, 4)
    mmlu_pro = metric(results, "leaderboard_mmlu_pro", "acc")
    return {
        "ifeval": ifeval,
        "bbh": mean_normalized(results, "leaderboard_bbh_", BBH_CHOICES, "acc_norm"),
        "math_hard": math_hard,
        "gpqa": gpqa,
        "musr": mean_normalized(results, "leaderboard_musr_", MUSR_CHOICES, "acc_norm"),
        "mmlu_pro": normalize(mmlu_pro, MMLU_PRO_CHOICES) if mmlu_pro is not None else None,
    }


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
    """v2 benchmarks scored from only some of their subtasks -> the absent subtask names."""
    groups = {
        "bbh": [f"leaderboard_bbh_{s}" for s in BBH_CHOICES],
        "math_hard": [f"leaderboard_math_{s}_hard" for s in MATH_SUBTASKS],
        "gpqa": [f"leaderboard_gpqa_{s}" for s in GPQA_CHOICES],
        "musr": [f"leaderboard_musr_{s}" for s in MUSR_CHOICES],
    }
    out = {}
    for name, tasks in groups.items():
        absent = [t for t in tasks if t not in results]
        if 0 < len(absent) < len(tasks):
            out[name] = absent
    return out


def leaderboard(results: dict, version: str) -> dict:
    """`{"average", "tasks": {name: score}}`, plus `missing` (benchmarks without any score; then the
    average is None) and, for v2, `partial` (benchmark -> subtasks absent from its unweighted mean)."""
    if version not in ("v1", "v2"):
        raise PodiumError(f"--version {version!r}: use v1 or v2")
    scores = v2_scores(results) if version == "v2" else v1_scores(results)
    present = {k: v for k, v in scores.items() if v is not None}
    missing = [k for k, v in scores.items() if v is None]
    average = sum(present.values()) / len(present) if present and not missing else None
    out = {"average": average, "tasks": present}
    if missing:
        out["missing"] = missing
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


def read_results(path: str | Path) -> dict:
    """lm-eval's results JSON (its `results` dict), podium eval output (`tasks`), or a bare dict."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PodiumError(f"{path}: no such results file") from None
    except json.JSONDecodeError as e:
        raise PodiumError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise PodiumError(f"{path}: expected a JSON object with a `results` dict")
    return data.get("results") or data.get("tasks") or data
