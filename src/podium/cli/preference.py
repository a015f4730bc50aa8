"""`podium eval preference --model DIR --data PAIRS.jsonl [--output FILE.json]`.

Prints, as its last line, {"accuracy": share of pairs with P(chosen ≻ rejected) > 0.5, "count": n}
and writes the same JSON to --output.
"""

from __future__ import annotations

import argparse
import json
import sys

from podium.errors import PodiumError
from podium.evaluation.preference_accuracy import evaluate_preference
from podium.ownership import file_output_problem, write_output_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podium eval preference",
                                description="Pair accuracy of a reward model or GPM on preference pairs.")
    p.add_argument("--model", required=True, help="folder saved by a reward/gpm training run")
    p.add_argument("--data", required=True, help="JSONL of {prompt, chosen, rejected}")
    p.add_argument("--output", help="write the JSON result here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file podium did not write")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=None,
                   help="keep the last N tokens of longer sequences (default: the model's context)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        inputs = [args.model, args.data]
        if args.output and (problem := file_output_problem(args.output, inputs, args.overwrite)):
            raise PodiumError(problem)
        result = evaluate_preference(args.model, args.data, args.batch_size, args.max_length)
        text = json.dumps(result)
        if args.output:
            write_output_text(args.output, text + "\n", inputs, args.overwrite)
    except PodiumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(text)
    return 0
