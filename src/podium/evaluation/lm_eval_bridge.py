"""Run lm-eval tasks on an in-memory model and return `{"tasks": {task: {metric: value}}}`.

The model object is wrapped in lm-eval's `HFLM` (which accepts a loaded
`PreTrainedModel`), so a stage can score the model it just trained without saving and
reloading it. With `backend="vllm"` (or `"auto"` on a GPU with vLLM installed and
`model_path` given) the model is instead loaded by lm-eval's `VLLM` wrapper from its
saved folder.

Tasks with different few-shot counts (the v1 suite) are run in one `simple_evaluate`
call per count, on the same wrapped model. lm-eval is an optional dependency
(`pip install podium[eval]`); it is imported only when a task is run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections import defaultdict
from pathlib import Path

import torch

from podium.errors import PodiumError
from podium.evaluation.suites import expand_tasks

log = logging.getLogger("podium")


def flatten_results(results: dict) -> dict[str, dict[str, float]]:
    """lm-eval's `results` dict -> {task: {metric: value}} with the ",filter" suffixes handled.

    `acc,none` becomes `acc`. A metric computed under named filters keeps its full name
    (`exact_match,strict-match`) and its bare name holds the first filter's value (lm-eval
    lists gsm8k's `strict-match` first). Standard errors, aliases and non-numbers are dropped.
    """
    out: dict[str, dict[str, float]] = {}
    for task, metrics in results.items():
        row: dict[str, float] = {}
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, _, filt = key.partition(",")
            if "_stderr" in metric or metric in ("sample_len", "samples"):
                continue
            if filt and filt != "none":
                row[key] = float(value)
            if filt == "none" or metric not in row:
                row[metric] = float(value)
        if row:
            out[task] = row
    return out


def resolve_backend(backend: str, model_path: str | os.PathLike | None) -> str:
    """`auto` -> `vllm` when CUDA, vLLM and a saved model folder are all there, else `hf`."""
    if backend not in ("auto", "hf", "vllm"):
        raise PodiumError(f"eval backend {backend!r}: use auto, hf or vllm")
    if backend != "auto":
        return backend

    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if model_path is not None and has_vllm and torch.cuda.is_available() else "hf"


def make_lm(model, tokenizer, backend: str = "hf", model_path: str | os.PathLike | None = None,
            batch_size: int | str = 8, max_length: int | None = None):
    """The lm-eval `LM` for `model`: HFLM around the live model, or VLLM from `model_path`."""
    backend = resolve_backend(backend, model_path)
    if backend == "vllm":
        if model_path is None:
            raise PodiumError("the vllm eval backend loads the model from its folder; pass model_path")
        from lm_eval.models.vllm_causallms import VLLM  # optional extras podium[eval] + podium[gpu]

        return VLLM(pretrained=str(model_path), tokenizer=str(model_path), batch_size="auto")
    from lm_eval.models.huggingface import HFLM  # optional extra podium[eval]

    device = str(next(model.parameters()).device)
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device, max_length=max_length)


def evaluate_lm_eval(
    model,
    tokenizer,
    tasks: list[str],
    include_path: str | os.PathLike | list | None = None,
    num_fewshot: int | None = None,
    limit: float | None = None,
    *,
    backend: str = "auto",
    model_path: str | os.PathLike | None = None,
    batch_size: int | str = 8,
    apply_chat_template: bool = False,
    raw: dict | None = None,
) -> dict:
    """Score `model` on lm-eval `tasks` (suite names `open-llm-v1`/`open-llm-v2` expanded).

    Returns `{"tasks": {task: {metric: value}}}`, one entry per task and per group/subtask
    lm-eval reports. `include_path` adds folders of local task YAMLs. When `raw` is a dict it
    receives lm-eval's own `results` dict (what `podium leaderboard` reads).
    """
    try:
        from lm_eval import simple_evaluate  # optional extra podium[eval], imported when a task runs
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise PodiumError("lm-eval is not installed; install it with `pip install podium[eval]`") from None

    manager = TaskManager(include_path=include_folders(include_path))
    by_shots = tasks_by_shots(manager, tasks, num_fewshot)

    lm = make_lm(model, tokenizer, backend, model_path, batch_size)
    merged: dict[str, dict] = {}
    for shots, names in by_shots.items():
        log.info("lm-eval: %s (%s-shot)", ", ".join(names), "task default" if shots is None else shots)
        res = simple_evaluate(
            model=lm,
            tasks=names,
            num_fewshot=shots,
            limit=limit,
            task_manager=manager,
            log_samples=False,
            apply_chat_template=apply_chat_template,
            bootstrap_iters=0,
        )
        if res is None:  # non-zero rank in a distributed run
            continue
        merged.update(res["results"])
    if raw is not None:
        raw.update(merged)
    return {"tasks": flatten_results(merged)}


def include_folders(include_path: str | os.PathLike | list | None) -> list[str] | None:
    """`--include-path` as a list of folders, each checked to exist (None: lm-eval's own tasks only)."""
    if include_path is None:
        return None
    paths = include_path if isinstance(include_path, list) else [include_path]
    for p in paths:
        if not Path(p).is_dir():
            raise PodiumError(f"--include-path {p}: not a folder of lm-eval task YAMLs")
    return [str(p) for p in paths]


def tasks_by_shots(manager, tasks: list[str], num_fewshot: int | None) -> dict[int | None, list[str]]:
    """The tasks (suites expanded) grouped by their number of few-shot examples; an unknown task is a PodiumError."""
    planned = expand_tasks(tasks, num_fewshot)
    unknown = [t for t, _ in planned if not manager.match_tasks([t])]
    if unknown:
        raise PodiumError(
            f"unknown lm-eval task(s): {', '.join(unknown)}; check the name or pass --include-path "
            "with a folder of task YAMLs"
        )
    by_shots: dict[int | None, list[str]] = defaultdict(list)
    for task, shots in planned:
        by_shots[shots].append(task)
    return by_shots
