"""`podium winrate JUDGMENTS.jsonl [--output FILE.json]`: raw and length-controlled win rate."""

from __future__ import annotations

import argparse

from podium.data.records import write_json
from podium.evaluation.winrate import winrate_from_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium winrate", description="Raw and length-controlled win rate.")
    p.add_argument("judgments", help="JSONL: preference, model_length|model_response, baseline_length|...")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    result = winrate_from_file(args.judgments)
    print(f"win rate {result['win_rate']:.2f}  length-controlled {result['lc_win_rate']:.2f}  (n={result['n']})")
    if args.output:
        write_json(args.output, result)
    return 0
