"""`podium leaderboard RESULTS.json --version v1|v2 [--output FILE.json]`: Open LLM Leaderboard scores."""

from __future__ import annotations

import argparse
import sys

from podium.errors import PodiumError
from podium.evaluation.leaderboard import format_table, leaderboard, load_results
from podium.ownership import file_output_problem, write_output_json


def main(argv: list[str] | None = None) -> int:
    """Entry point of `podium leaderboard RESULTS.json --version v1|v2 [--output FILE.json]`."""
    p = argparse.ArgumentParser(prog="podium leaderboard",
                                description="Open LLM Leaderboard scores from lm-eval results.")
    p.add_argument("results", help="lm-eval results JSON (or `podium eval --output` file)")
    p.add_argument("--version", choices=["v1", "v2"], default="v2")
    p.add_argument("--output", default=None, help="write {'average': ..., 'tasks': {name: score}} here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file podium did not write")
    args = p.parse_args(argv)
    if args.output and (problem := file_output_problem(args.output, [args.results], args.overwrite)):
        raise PodiumError(problem)
    loaded = load_results(args.results)
    board = leaderboard(loaded["results"], args.version, loaded["n_samples"], source=args.results)
    print(format_table(board, args.version))
    for name, source in board.get("sources", {}).items():
        print(f"{name}: {source}", file=sys.stderr)
    if board.get("missing"):
        print(f"missing from {args.results}: {', '.join(board['missing'])} (no average)", file=sys.stderr)
    for name, absent in board.get("partial", {}).items():
        print(f"{name}: scored without {len(absent)} subtask(s): {', '.join(absent)}", file=sys.stderr)
    if args.output:
        write_output_json(args.output, board, [args.results], args.overwrite)
    return 0
