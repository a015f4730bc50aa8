"""`python -m podium.cli.worker STAGE_DIR`: one rank of a distributed stage, started by `accelerate launch`.

`podium run` writes the stage folder's stage.json and .launch/config.json, then starts

    accelerate launch --num_processes 2 ... -m podium.cli.worker RUN_DIR/STAGE --run-dir RUN_DIR --timeout 1800

(`podium run --dry-run` prints the exact command of each distributed stage). Every rank validates the
config in .launch/config.json and runs the stage; see podium.distributed.launcher for the protocol.
"""

from __future__ import annotations

import argparse
import logging
import os

from podium.cli.dispatch import setup_logging
from podium.distributed.worker import run_worker


class RankPrefix(logging.Filter):
    """Prefix the messages of ranks other than 0 with their rank (all ranks share one console)."""

    def __init__(self, rank: str):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"[rank {self.rank}] {record.msg}"
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podium.cli.worker", description="Run one rank of a distributed stage.")
    p.add_argument("stage_dir", help="the stage folder podium run prepared (holds .launch/config.json)")
    p.add_argument("--run-dir", help="the run directory the stage belongs to")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds a rank may wait for the others")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    setup_logging()
    rank = os.environ.get("RANK", "0")
    if rank != "0":
        # One copy of the stage's log is enough; warnings and errors of every rank are kept.
        logging.getLogger().setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            handler.addFilter(RankPrefix(rank))
    return run_worker(args.stage_dir, args.run_dir, timeout=args.timeout, trust_remote_code=args.trust_remote_code,
                      allow_pickle=args.allow_pickle, show_progress=not args.no_progress)


if __name__ == "__main__":
    raise SystemExit(main())
