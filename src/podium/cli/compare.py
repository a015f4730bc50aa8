"""`podium compare RUN_DIR... [--output DIR]`: every metric's mean and 95 % CI across runs, paired differences.

    podium compare runs/quickstart-seeds                      # the seed-N runs of `podium run --seeds`
    podium compare lr3=runs/lr-3e-3 lr1=runs/lr-1e-3 --output runs/lr-compare   # two recipes, one setting apart

A folder of seed-N run dirs is one group (named after it, or LABEL=DIR); plain run dirs given together
are one group. Groups run on the same seeds are compared seed by seed (podium.cards.compare).
"""

from __future__ import annotations

import argparse

from podium.multiseed import compare_dirs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium compare", description="Compare runs across seeds: means, 95 % CIs and "
                                "paired differences (compare.json, compare.md, compare_*.png).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run dirs, folders of seed-N run dirs, or LABEL=DIR")
    p.add_argument("--output", "-o", help="where compare.* go (default: the one folder of seed-N runs given)")
    p.add_argument("--no-plots", action="store_true", help="write compare.json and compare.md only")
    args = p.parse_args(argv)
    _, paths = compare_dirs(args.runs, args.output, plots=not args.no_plots)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0
