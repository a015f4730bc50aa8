"""`podium report RUN_DIR`: RUN_DIR/report.md with its plots."""

from __future__ import annotations

import argparse

from podium.cards.report import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium report", description="Write RUN_DIR/report.md with plots.")
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    print(f"wrote {write_report(args.run_dir)}")
    return 0
