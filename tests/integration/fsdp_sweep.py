"""Run several training stages one after another on every rank of one launch (the test's budget: one launch
of 2 processes for all of them instead of one launch each).

    accelerate launch --multi_gpu --num_processes 2 tests/integration/fsdp_sweep.py RUNS.json

RUNS.json: [{"kind": "train", "config": {...}, "out": "DIR"}, ...]. Rank 0 writes each run's metrics to
DIR/sweep-metrics.json. {"kind": "memory", "size": SIZE, "out": FILE} measures the peak memory of each process
(benchmarks/sharded_memory.py) into FILE. The ranks get podium's FSDP2 settings from PODIUM_FSDP, as `podium run` sets it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from benchmarks import sharded_memory

from podium.distributed.world import current_world
from podium.stages import run_stage


def main(path: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for run in json.loads(Path(path).read_text()):
        if run["kind"] == "memory":
            sharded_memory.worker(run["size"], run["out"])
            continue
        metrics = run_stage(run["kind"], run["config"], run["out"])
        if current_world().is_main:
            (Path(run["out"]) / "sweep-metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main(sys.argv[1])
