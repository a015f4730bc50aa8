"""Evaluation results of a run -> the `model-index` entries and results tables of a model card.

Scores are gathered from every evaluation stage, in this order of preference:
`<stage>/results.json` (`{"tasks": {task: {metric: value}}}`, what `podium eval --output`
writes), `<stage>/leaderboard_v1.json` / `leaderboard_v2.json` (what `podium leaderboard
--output` writes), and the stage's metrics in report.json, read as
`leaderboard_v1/<name>`, `leaderboard_v2/<name>`, `accuracy/<task>`, `accuracy`,
`pass@k/<task>`, `[iterN/]win_rate`, `[iterN/]lc_win_rate` and `<task>/<metric>`; self-play
stages add the win rate (a fraction, shown in percent) of the model they train against their baseline.
Open LLM Leaderboard scores are recomputed from task results when a whole suite is there.
The entries follow the shape the leaderboard writes into seed cards (task type and name;
dataset name, type, config, split, args.num_few_shot; metric type, value, name; source).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import EvalResult

from podium.cards.run_info import RunInfo
from podium.evaluation.leaderboard import LABELS, format_table, leaderboard
from podium.files import is_number
from podium.rundir import read_json_object

LM_EVAL_SOURCE = ("lm-evaluation-harness (podium eval)", "https://github.com/EleutherAI/lm-evaluation-harness")
NO_SOURCE = (None, None)  # scored by podium itself: the entry carries no external source

# name -> (dataset type, config, split, num_few_shot, metric type, metric name), as the leaderboard labels them.
BENCHMARKS = {
    "v1": {
        "arc": ("ai2_arc", "ARC-Challenge", "test", 25, "acc_norm", "normalized accuracy"),
        "hellaswag": ("hellaswag", None, "validation", 10, "acc_norm", "normalized accuracy"),
        "mmlu": ("cais/mmlu", "all", "test", 5, "acc", "accuracy"),
        "truthfulqa": ("truthful_qa", "multiple_choice", "validation", 0, "mc2", "mc2"),
        "winogrande": ("winogrande", "winogrande_xl", "validation", 5, "acc", "accuracy"),
        "gsm8k": ("gsm8k", "main", "test", 5, "acc", "accuracy"),
    },
    "v2": {
        "ifeval": ("HuggingFaceH4/ifeval", None, "train", 0, "inst_level_strict_acc and prompt_level_strict_acc",
                   "strict accuracy"),
        "bbh": ("BBH", None, "test", 3, "acc_norm", "normalized accuracy"),
        "math_hard": ("hendrycks/competition_math", None, "test", 4, "exact_match", "exact match"),
        "gpqa": ("Idavidrein/gpqa", None, "train", 0, "acc_norm", "acc_norm"),
        "musr": ("TAUR-Lab/MuSR", None, "test", 0, "acc_norm", "acc_norm"),
        "mmlu_pro": ("TIGER-Lab/MMLU-Pro", "main", "test", 5, "acc", "accuracy"),
    },
}
V1_TASKS = {"arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"}
EVAL_KINDS = ("eval",)
SELF_PLAY_KINDS = ("selfplay",)  # report the win rate of the model they train against their baseline
WIN_RATE = re.compile(r"(?:iter(\d+)/)?(lc_win_rate|win_rate)")
PERCENT = re.compile(r"(^|_)(acc|accuracy|exact_match|mc1|mc2|f1|pass@\d+)($|_|,)")


@dataclass
class Scores:
    """Everything a card reports about a run's evaluations."""

    boards: dict[str, dict] = field(default_factory=dict)  # "v1"/"v2" -> {"average", "tasks"}
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    fewshot: dict[str, int] = field(default_factory=dict)
    win_rates: dict[str, float] = field(default_factory=dict)  # win_rate, lc_win_rate: fractions
    baseline: str | None = None

    def empty(self) -> bool:
        return not (self.boards or self.tasks or self.win_rates)


def add_stage_metrics(scores: Scores, metrics: dict, default_task: str) -> None:
    boards: dict[str, dict[str, float]] = {}
    iters: dict[str, tuple[int, float]] = {}
    for key, value in metrics.items():
        if not is_number(value):
            continue
        m = re.fullmatch(r"leaderboard_(v[12])/(\w+)", key)
        if m:
            boards.setdefault(m.group(1), {})[m.group(2)] = float(value)
            continue
        m = WIN_RATE.fullmatch(key)
        if m:
            it = int(m.group(1) or 10**9)  # the un-prefixed value is the final one
            if m.group(2) not in iters or it >= iters[m.group(2)][0]:
                iters[m.group(2)] = (it, float(value))
            continue
        m = re.fullmatch(r"(accuracy|pass@\d+)/(.+)", key)
        if m:  # built-in task metrics are keyed metric-first: accuracy/<task>, pass@k/<task>
            scores.tasks.setdefault(m.group(2), {})[m.group(1)] = float(value)
        elif key == "accuracy":
            # The overall accuracy repeats the per-task ones unless it is the only one.
            if not any(k.startswith("accuracy/") for k in metrics):
                scores.tasks.setdefault(default_task, {})["accuracy"] = float(value)
        elif "/" in key and not key.startswith(("train/", "eval_loss", "iter")):
            task, metric = key.rsplit("/", 1)
            scores.tasks.setdefault(task, {}).setdefault(metric, float(value))
    for version, values in boards.items():
        average = values.pop("average", None)
        scores.boards.setdefault(version, {"average": average, "tasks": values})
    scores.win_rates.update({k: v for k, (_, v) in iters.items()})


def evaluates(stage, model: str) -> bool:
    """Whether `stage` measured `model`: an eval stage reads it; a self-play stage trains it (its own folder)."""
    value = str(stage.folder) if stage.kind in SELF_PLAY_KINDS else stage.config.get("model")
    return isinstance(value, str) and Path(value).resolve() == Path(model).resolve()


def display_name(model: str, run: RunInfo) -> str:
    """A model as a card names it: a stage of this run by its name, anything else as given."""
    path = Path(model)
    return f"`{path.name}`" if path.is_absolute() and path.parent.resolve() == run.run_dir.resolve() else model


def collect_scores(run: RunInfo, model: str | None = None) -> Scores:
    """Gather evaluation results from the eval-like stages of `run` (files first, then metrics).

    With `model`, only the stages that evaluated that model count (all of them if none did),
    so a card never reports another model's numbers.
    """
    scores = Scores()
    stages = run.stages
    if model is not None and any(evaluates(s, model) for s in stages):
        stages = [s for s in stages if evaluates(s, model)]
    for s in stages:
        if s.kind in SELF_PLAY_KINDS:
            add_stage_metrics(scores, {k: v for k, v in s.metrics.items() if WIN_RATE.fullmatch(k)}, s.name)
            baseline = s.config.get("baseline") or s.config.get("model")  # the default baseline is pi_1
            if isinstance(baseline, str) and scores.baseline is None:
                scores.baseline = display_name(baseline, run)
            continue
        files = {n: read_json_object(s.folder / f"{n}.json") for n in ("results", "leaderboard_v1", "leaderboard_v2")}
        if s.kind not in EVAL_KINDS and not any(files.values()):
            continue
        for task, metrics in (files["results"].get("tasks") or {}).items():
            if isinstance(metrics, dict):
                scores.tasks.setdefault(task, {}).update({k: float(v) for k, v in metrics.items() if is_number(v)})
        for version in ("v1", "v2"):
            board = files[f"leaderboard_{version}"]
            if isinstance(board.get("tasks"), dict):
                scores.boards[version] = board
        cfg_task = s.config.get("task") if isinstance(s.config.get("task"), str) else None
        # The built-in eval stage may keep its metrics in results.json as {"metrics": {...}}.
        file_metrics = files["results"].get("metrics")
        add_stage_metrics(scores, {**(file_metrics if isinstance(file_metrics, dict) else {}), **s.metrics},
                          cfg_task or s.name)
        if isinstance(s.config.get("num_fewshot"), int):
            for task in scores.tasks:
                scores.fewshot.setdefault(task, s.config["num_fewshot"])
    for version in ("v1", "v2"):
        if version not in scores.boards:
            board = leaderboard(scores.tasks, version)
            if not board.get("missing"):
                scores.boards[version] = board
    return scores


def covered_by_board(task: str, boards: dict) -> bool:
    if "v2" in boards and task.startswith("leaderboard_"):
        return True
    return "v1" in boards and (task in V1_TASKS or task.startswith("mmlu_"))


def as_percent(fraction: float) -> float:
    """A rate stored as a fraction, shown in percent as leaderboards do: 0.5731 -> 57.31."""
    return round(100.0 * fraction, 2)


def as_reported(metric: str, value: float) -> float:
    """Accuracy-like fractions are reported in percent, like the leaderboard does."""
    return round(value * 100, 2) if PERCENT.search(metric) and 0.0 <= value <= 1.0 else round(value, 4)


def eval_results(scores: Scores, model_name: str) -> list[EvalResult]:
    """`model-index` entries for every score in `scores`."""
    out: list[EvalResult] = []
    for version in ("v2", "v1"):
        board = scores.boards.get(version)
        if not board:
            continue
        for name, value in board["tasks"].items():
            if value is None or name not in BENCHMARKS[version]:
                continue
            dtype, config, split, shots, mtype, mname = BENCHMARKS[version][name]
            out.append(EvalResult(
                task_type="text-generation", task_name="Text Generation",
                dataset_name=LABELS[version][name], dataset_type=dtype, dataset_config=config,
                dataset_split=split, dataset_args={"num_few_shot": shots},
                metric_type=mtype, metric_value=round(float(value), 2), metric_name=mname,
                source_name=f"Open LLM Leaderboard {version} aggregation of {LM_EVAL_SOURCE[0]}",
                source_url=LM_EVAL_SOURCE[1],
            ))
    for task, metrics in scores.tasks.items():
        if covered_by_board(task, scores.boards):
            continue
        builtin = set(metrics) <= {"accuracy"} | {m for m in metrics if m.startswith("pass@")}
        for metric, value in metrics.items():
            shots = scores.fewshot.get(task)
            source = NO_SOURCE if builtin else LM_EVAL_SOURCE
            out.append(EvalResult(
                task_type="text-generation", task_name="Text Generation",
                dataset_name=task, dataset_type=f"podium/{task}" if builtin else task,
                dataset_args={"num_few_shot": shots} if shots is not None else None,
                metric_type=metric, metric_value=as_reported(metric, value), metric_name=metric,
                source_name=source[0], source_url=source[1],
            ))
    for key, name in (("win_rate", "win rate"), ("lc_win_rate", "length-controlled win rate")):
        if key in scores.win_rates:
            baseline = scores.baseline or "baseline"
            out.append(EvalResult(
                task_type="text-generation", task_name="Text Generation",
                dataset_name=f"Win rate against {baseline}", dataset_type="podium/win-rate",
                metric_type=key, metric_value=as_percent(scores.win_rates[key]), metric_name=f"{name} (%)",

            ))
    return out


def results_markdown(scores: Scores) -> str:
    """The results section: leaderboard tables as the seed cards print them, then other tasks and win rates."""
    parts = []
    for version, title in (("v2", "Open LLM Leaderboard v2"), ("v1", "Open LLM Leaderboard v1")):
        if version in scores.boards:
            board = {"average": scores.boards[version].get("average"), "tasks": scores.boards[version]["tasks"]}
            notes = "".join(f"\n\n{name}: averaged without {len(absent)} subtask(s) that were not run."
                            for name, absent in scores.boards[version].get("partial", {}).items())
            parts.append(f"### {title} (computed locally with lm-eval)\n\n{format_table(board, version)}{notes}")
    rows = [(t, m, as_reported(m, v)) for t, ms in scores.tasks.items() if not covered_by_board(t, scores.boards)
            for m, v in ms.items()]
    if rows:
        lines = ["| Task | Metric | Value |", "|---|---|---:|"] + [f"| {t} | {m} | {v} |" for t, m, v in rows]
        parts.append("### Tasks\n\n" + "\n".join(lines))
    if scores.win_rates:
        lines = ["| Metric | Value (%) |", "|---|---:|"] + [f"| {k} | {as_percent(v):.2f} |"
                                                             for k, v in scores.win_rates.items()]
        parts.append(f"### Win rate against {scores.baseline or 'the baseline'}\n\n" + "\n".join(lines))
    return "\n\n".join(parts) if parts else "No evaluation results were recorded for this run."
