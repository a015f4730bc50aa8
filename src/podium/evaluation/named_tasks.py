"""Score a model on tasks by name: podium's built-in tasks, lm-eval tasks (plus local YAML folders) and the
suites `open-llm-v1` / `open-llm-v2`. What `podium eval --model DIR --tasks NAMES` and the `eval`
stage's `lm_eval_tasks` run.

Built-in tasks are scored by callables the caller passes (`builtin_tasks`, e.g. `builtin_task_scorers()`),
so lm-eval and the built-in evaluator stay independent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch

from podium.errors import PodiumError
from podium.evaluation.lm_eval_bridge import evaluate_lm_eval, resolve_backend
from podium.evaluation.task_accuracy import task_accuracy
from podium.models.io import load_model, load_tokenizer
from podium.tasks import TASKS, get_task

# name -> fn(model, tokenizer, num_fewshot, limit) -> {metric: value}
BuiltinTasks = Mapping[str, Callable[..., dict[str, float]]]


def builtin_task_scorers(count: int = 200, seed: int = 0) -> dict:
    """Scorers for `run_eval`: {task name: fn(model, tokenizer, num_fewshot, limit) -> {"accuracy": v}}."""

    def scorer(name):
        def score(model, tokenizer, num_fewshot=None, limit=None):
            items = get_task(name).items(int(limit or count), split="test", seed=seed)
            return {"accuracy": task_accuracy(model, tokenizer, items)[f"accuracy/{name}"]}

        return score

    return {name: scorer(name) for name in TASKS}


def run_eval(
    model,
    tokenizer,
    tasks: list[str],
    *,
    include_path: str | os.PathLike | None = None,
    num_fewshot: int | None = None,
    limit: float | None = None,
    builtin_tasks: BuiltinTasks | None = None,
    raw: dict | None = None,
    **lm_eval_kwargs,
) -> dict:
    """Score `model` on every named task -> `{"tasks": {task: {metric: value}}}`.

    Names found in `builtin_tasks` go to their callable; the rest go to lm-eval in one batch.
    """
    builtin_tasks = builtin_tasks or {}
    out: dict[str, dict[str, float]] = {}
    external = [t for t in tasks if t not in builtin_tasks]
    for name in tasks:
        if name in builtin_tasks:
            out[name] = {k: float(v) for k, v in builtin_tasks[name](model, tokenizer, num_fewshot, limit).items()}
    if external:
        res = evaluate_lm_eval(model, tokenizer, external, include_path=include_path, num_fewshot=num_fewshot,
                               limit=limit, raw=raw, **lm_eval_kwargs)
        out.update(res["tasks"])
    return {"tasks": out}


def evaluate_model(model_path: str, tasks: list[str], *, include_path: str | None = None,
                   num_fewshot: int | None = None, limit: float | None = None, batch_size: int | str = 8,
                   backend: str = "auto", apply_chat_template: bool = False, dtype: str = "float32",
                   device: str | None = None, builtin_tasks: BuiltinTasks | None = None) -> tuple[dict, dict]:
    """Load the model at `model_path` and score it on `tasks`: (`{"tasks": ...}`, lm-eval's raw `results`)."""
    if not tasks:
        raise PodiumError("--tasks: give at least one task name")
    backend = resolve_backend(backend, model_path)
    needs_live_model = backend == "hf" or bool(builtin_tasks)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # vLLM loads the weights itself; a second copy on the GPU would only take memory.
    model = load_model(model_path, dtype=dtype, device=device) if needs_live_model else None
    tokenizer = load_tokenizer(model_path)
    raw: dict = {}
    result = run_eval(model, tokenizer, tasks, include_path=include_path, num_fewshot=num_fewshot, limit=limit,
                      builtin_tasks=builtin_tasks, raw=raw, backend=backend, model_path=model_path,
                      batch_size=batch_size, apply_chat_template=apply_chat_template)
    return result, raw


def results_table(result: dict) -> str:
    """A plain-text table of `{"tasks": {task: {metric: value}}}`: one row per task and metric."""
    rows = [(t, m, v) for t, ms in result["tasks"].items() for m, v in ms.items()]
    if not rows:
        return "(no results)"
    w1 = max(len("task"), *(len(r[0]) for r in rows))
    w2 = max(len("metric"), *(len(r[1]) for r in rows))
    lines = [f"{'task':<{w1}}  {'metric':<{w2}}  value", f"{'-' * w1}  {'-' * w2}  ------"]
    lines += [f"{t:<{w1}}  {m:<{w2}}  {v:.4f}" for t, m, v in rows]
    return "\n".join(lines)
