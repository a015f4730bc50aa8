"""`podium card RUN_DIR [--output README.md] [--no-report] ...`: the model card and the run report."""

from __future__ import annotations

import argparse

from podium.cards.model_card import write_card
from podium.cards.report import write_report
from podium.run_lock import run_dir_lock
from podium.rundir import require_run_dir


def main(argv: list[str] | None = None) -> int:
    """Write RUN_DIR/README.md (model card) and RUN_DIR/report.md with its plots."""
    p = argparse.ArgumentParser(prog="podium card", description="Write a model card and run report for a run.")
    p.add_argument("run_dir")
    p.add_argument("--output", default=None, help="card path (default: RUN_DIR/README.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing card file podium did not write")
    p.add_argument("--model-name", default=None)
    p.add_argument("--license", default=None, help="default: the base model's license if readable, else 'other'")
    p.add_argument("--base-model", action="append", default=None)
    p.add_argument("--dataset", action="append", default=None, dest="datasets")
    p.add_argument("--tag", action="append", default=None, dest="tags")
    p.add_argument("--language", default=None)
    p.add_argument("--no-report", action="store_true", help="skip report.md and its plots")
    args = p.parse_args(argv)
    with run_dir_lock(require_run_dir(args.run_dir, "write a model card (README.md)")):  # not while a run writes it
        out = write_card(args.run_dir, args.output, model_name=args.model_name, license=args.license,
                         base_model=args.base_model, datasets_=args.datasets, tags=args.tags, language=args.language,
                         overwrite=args.overwrite)
        print(f"wrote {out}")
        if not args.no_report:
            print(f"wrote {write_report(args.run_dir)}")
    return 0
