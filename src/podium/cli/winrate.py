"""`podium winrate ANNOTATIONS [--df-gamed FILE] [--instruction-difficulty FILE] [--output OUT.json]`.

Raw and length-controlled (AlpacaEval 2) win rate of a model against a baseline, from AlpacaEval
annotation files or podium judgments (podium.evaluation.winrate).
"""

from __future__ import annotations

import argparse

from podium.errors import PodiumError
from podium.evaluation.winrate import summary, winrate_report
from podium.ownership import file_output_problem, write_output_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium winrate",
                                description="Raw and length-controlled (AlpacaEval 2) win rate against a baseline.")
    p.add_argument("annotations", help="AlpacaEval annotations (JSON list or JSONL) or podium judgments (JSONL)")
    p.add_argument("--df-gamed", default=None, help="AlpacaEval's df_gamed.csv: use alpaca_eval 0.6.6's estimator")
    p.add_argument("--instruction-difficulty", default=None, help="AlpacaEval's instruction_difficulty.csv")
    p.add_argument("--output", default=None, help="write the numbers as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file podium did not write")
    args = p.parse_args(argv)
    inputs = [x for x in (args.annotations, args.df_gamed, args.instruction_difficulty) if x]
    if args.output and (problem := file_output_problem(args.output, inputs, args.overwrite)):
        raise PodiumError(problem)
    report = winrate_report(args.annotations, args.df_gamed, args.instruction_difficulty)
    print(summary(report))
    for note in report.get("notes", []):
        print(f"note: {note}")
    if args.output:
        write_output_json(args.output, report, inputs, args.overwrite)
    return 0
