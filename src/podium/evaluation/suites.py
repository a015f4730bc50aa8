"""Named lm-eval task suites: the Open LLM Leaderboard v1 and v2 task lists with their few-shot counts.

v1 (Beeching et al. 2023, Open LLM Leaderboard): ARC-Challenge 25-shot, HellaSwag 10,
MMLU 5, TruthfulQA mc2 0, Winogrande 5, GSM8K 5. v2 (Fourrier et al. 2024): the
`leaderboard_*` tasks of lm-eval, whose YAMLs already fix the few-shot count (BBH 3,
MATH 4, MMLU-Pro 5, IFEval/GPQA/MuSR 0); `None` means "use the task's own".
"""

from __future__ import annotations

SUITES: dict[str, dict[str, int | None]] = {
    "open-llm-v1": {
        "arc_challenge": 25,
        "hellaswag": 10,
        "mmlu": 5,
        "truthfulqa_mc2": 0,
        "winogrande": 5,
        "gsm8k": 5,
    },
    "open-llm-v2": {
        "leaderboard_ifeval": None,
        "leaderboard_bbh": None,
        "leaderboard_math_hard": None,
        "leaderboard_gpqa": None,
        "leaderboard_musr": None,
        "leaderboard_mmlu_pro": None,
    },
}


def expand_tasks(names: list[str] | str, num_fewshot: int | None = None) -> list[tuple[str, int | None]]:
    """Task names (comma-separated string or list) with suites expanded -> [(task, num_fewshot)].

    An explicit `num_fewshot` overrides every count, the suites' included; duplicates are dropped.
    """
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    out: dict[str, int | None] = {}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        for task, shots in SUITES.get(name, {name: None}).items():
            out.setdefault(task, shots if num_fewshot is None else num_fewshot)
    return list(out.items())
