"""`podium eval ...`: three forms.

    podium eval --model DIR --tasks NAMES [--include-path DIR] [--num-fewshot N] [--output FILE.json]
    podium eval preference --model DIR --data PAIRS.jsonl [--output FILE.json]
    podium eval CONFIG.yaml [key=value ...]            (the `eval` stage alone)

Task names may be podium built-in tasks, lm-eval tasks (plus local YAML folders) or the suites
`open-llm-v1` / `open-llm-v2`; when a whole suite ran, its leaderboard table is printed too.
"""

from __future__ import annotations

import argparse
import math

from podium.cli.preference import main as preference_main
from podium.cli.stage import stage_command
from podium.errors import PodiumError
from podium.evaluation.leaderboard import format_table, leaderboard
from podium.evaluation.named_tasks import builtin_task_scorers, evaluate_model, results_table
from podium.ownership import file_output_problem, write_output_json


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
    p.add_argument("--overwrite", action="store_true", help="replace existing output files podium did not write")
    args = p.parse_args(argv)
    if args.limit is not None and not (math.isfinite(args.limit) and args.limit > 0):
        p.error(f"--limit {args.limit}: give a number of examples >= 1 or a fraction in (0, 1)")
    return args


def tasks_main(argv: list[str]) -> int:
    args = parse_args(argv)
    inputs = [x for x in (args.model, args.include_path) if x]
    for out in (args.output, args.raw_output):  # before the evaluation, not after it
        if out and (problem := file_output_problem(out, inputs, args.overwrite)):
            raise PodiumError(problem)
    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    result, raw = evaluate_model(args.model, tasks, include_path=args.include_path, num_fewshot=args.num_fewshot,
                                 limit=limit, batch_size=batch, backend=args.backend,
                                 apply_chat_template=args.apply_chat_template, dtype=args.dtype, device=args.device,
                                 builtin_tasks=builtin_task_scorers())
    print(results_table(result))
    for version in ("v1", "v2"):
        board = leaderboard(raw, version)
        if not board.get("missing"):
            print(f"\nOpen LLM Leaderboard {version}:\n{format_table(board, version)}")
    if args.output:
        write_output_json(args.output, result, inputs, args.overwrite)
    if args.raw_output:
        write_output_json(args.raw_output, {"results": raw}, inputs, args.overwrite)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "preference":
        return preference_main(argv[1:])
    if argv and argv[0].endswith((".yaml", ".yml")):
        return stage_command("eval", argv)
    return tasks_main(argv)
