"""Run several training stages one after another on every rank of one launch (the test's budget: one launch
of 2 processes for all of them instead of one launch each).

    accelerate launch --multi_gpu --num_processes 2 tests/integration/fsdp_sweep.py RUNS.json

RUNS.json: [{"kind": "train", "config": {...}, "out": "DIR"}, ...]. Rank 0 writes each run's metrics to
DIR/sweep-metrics.json, with `rank_local_loads`: how many models the run loaded rank-locally (podium.distributed.fsdp_load).
A run's "env" (optional) sets environment variables for that run only (`PODIUM_FSDP` with rank_local_load false: the
whole-model loading path). {"kind": "memory", "size": SIZE, "out": FILE} measures the peak memory of each process
(benchmarks/sharded_memory.py) into FILE. The ranks get podium's FSDP2 settings from PODIUM_FSDP, as `podium run` sets it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from benchmarks import sharded_memory

from podium.distributed.world import current_world
from podium.stages import run_stage


class CountRankLocalLoads(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        self.count += "FSDP2: rank-local load" in record.getMessage()


def main(path: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counter = CountRankLocalLoads()
    logging.getLogger("podium").addHandler(counter)
    for run in json.loads(Path(path).read_text()):
        if run["kind"] == "memory":
            sharded_memory.worker(run["size"], run["out"])
            continue
        before, counter.count = dict(os.environ), 0
        os.environ.update(run.get("env", {}))
        try:
            metrics = run_stage(run["kind"], run["config"], run["out"])
        finally:
            os.environ.clear()
            os.environ.update(before)
        if current_world().is_main:
            metrics["rank_local_loads"] = counter.count
            (Path(run["out"]) / "sweep-metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main(sys.argv[1])
