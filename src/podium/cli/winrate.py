"""`podium winrate ANNOTATIONS [--df-gamed FILE] [--instruction-difficulty FILE] [--output OUT.json]`.

Raw and length-controlled (AlpacaEval 2) win rate of a model against a baseline, from AlpacaEval
annotation files or podium judgments (podium.evaluation.winrate).
"""

from __future__ import annotations

import argparse

from podium.data.records import write_json
from podium.evaluation.winrate import summary, winrate_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium winrate",
                                description="Raw and length-controlled (AlpacaEval 2) win rate against a baseline.")
    p.add_argument("annotations", help="AlpacaEval annotations (JSON list or JSONL) or podium judgments (JSONL)")
    p.add_argument("--df-gamed", default=None, help="AlpacaEval's df_gamed.csv: use alpaca_eval 0.6.6's estimator")
    p.add_argument("--instruction-difficulty", default=None, help="AlpacaEval's instruction_difficulty.csv")
    p.add_argument("--output", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    report = winrate_report(args.annotations, args.df_gamed, args.instruction_difficulty)
    print(summary(report))
    for note in report.get("notes", []):
        print(f"note: {note}")
    if args.output:
        write_json(args.output, report)
    return 0
