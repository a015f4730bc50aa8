"""`podium report RUN_DIR`: RUN_DIR/report.md with its plots."""

from __future__ import annotations

import argparse

from podium.cards.report import write_report
from podium.run_lock import run_dir_lock
from podium.rundir import require_run_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium report", description="Write RUN_DIR/report.md with plots.")
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    with run_dir_lock(require_run_dir(args.run_dir, "write report.md")):  # not while a run writes it
        print(f"wrote {write_report(args.run_dir)}")
    return 0
