"""`podium eval --model DIR --tasks NAMES [--include-path DIR] [--num-fewshot N] [--output FILE.json]`.

Task names may be podium built-in tasks, lm-eval tasks (plus local YAML folders) or the
suites `open-llm-v1` / `open-llm-v2`. Built-in tasks are scored by a callable the caller
passes (`builtin_tasks`), so this module does not depend on the built-in evaluator.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping

from podium.data.records import write_json
from podium.errors import PodiumError

# name -> fn(model, tokenizer, num_fewshot, limit) -> {metric: value}
BuiltinTasks = Mapping[str, Callable[..., dict[str, float]]]


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
        from podium.evaluation.lm_eval_bridge import evaluate_lm_eval

        res = evaluate_lm_eval(model, tokenizer, external, include_path=include_path, num_fewshot=num_fewshot,
                               limit=limit, raw=raw, **lm_eval_kwargs)
        out.update(res["tasks"])
    return {"tasks": out}


def format_table(result: dict) -> str:
    """A plain-text table: one row per task and metric."""
    rows = [(t, m, v) for t, ms in result["tasks"].items() for m, v in ms.items()]
    if not rows:
        return "(no results)"
    w1 = max(len("task"), *(len(r[0]) for r in rows))
    w2 = max(len("metric"), *(len(r[1]) for r in rows))
    lines = [f"{'task':<{w1}}  {'metric':<{w2}}  value", f"{'-' * w1}  {'-' * w2}  ------"]
    lines += [f"{t:<{w1}}  {m:<{w2}}  {v:.4f}" for t, m, v in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="podium eval", description="Evaluate a model on built-in and lm-eval tasks.")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--tasks", required=True, help="comma-separated task names or suites (open-llm-v1, open-llm-v2)")
    p.add_argument("--include-path", default=None, help="folder of local lm-eval task YAMLs")
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot count for every task")
    p.add_argument("--limit", type=float, default=None, help="examples per task (for quick checks)")
    p.add_argument("--batch-size", default="8")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="auto: vLLM on a GPU when installed, else transformers")
    p.add_argument("--apply-chat-template", action="store_true",
                   help="render prompts (and few-shot turns) with the model's chat template, as leaderboard v2 "
                   "does for chat models")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default=None)
    p.add_argument("--output", default=None, help="write {'tasks': {task: {metric: value}}} here")
    p.add_argument("--raw-output", default=None, help="also write lm-eval's own `results` dict here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, builtin_tasks: BuiltinTasks | None = None) -> int:
    """Entry point of `podium eval`; `builtin_tasks` maps podium task names to their scorers."""
    args = parse_args(argv)
    from podium.evaluation.lm_eval_bridge import resolve_backend
    from podium.models.io import load_model, load_tokenizer

    backend = resolve_backend(args.backend, args.model)
    needs_live_model = backend == "hf" or bool(builtin_tasks)
    device = args.device or ("cuda" if _cuda() else "cpu")
    # vLLM loads the weights itself; a second copy on the GPU would only take memory.
    model = load_model(args.model, dtype=args.dtype, device=device) if needs_live_model else None
    tokenizer = load_tokenizer(args.model)
    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise PodiumError("--tasks: give at least one task name")
    raw: dict = {}
    result = run_eval(model, tokenizer, tasks, include_path=args.include_path, num_fewshot=args.num_fewshot,
                      limit=limit, builtin_tasks=builtin_tasks, raw=raw, backend=backend,
                      model_path=args.model, batch_size=batch,
                      apply_chat_template=args.apply_chat_template)
    print(format_table(result))
    from podium.evaluation.leaderboard import format_table as board_table
    from podium.evaluation.leaderboard import leaderboard

    for version in ("v1", "v2"):
        board = leaderboard(raw, version)
        if not board.get("missing"):
            print(f"\nOpen LLM Leaderboard {version}:\n{board_table(board, version)}")
    if args.output:
        write_json(args.output, result)
    if args.raw_output:
        write_json(args.raw_output, {"results": raw})
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
