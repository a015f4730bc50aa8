"""One rank of a distributed stage (`python -m podium.cli.worker STAGE_DIR`, started by accelerate launch).

Each rank re-reads the stage's resolved config from STAGE_DIR/.launch/config.json (written by `podium run`),
validates it with the stage kind's schema and runs the stage function, which splits its work by
rank (podium.distributed.world). Rank 0 writes the metrics to `.launch/result.json` once every rank
has returned; a rank that fails writes `.launch/error-rank<R>.json` and exits at once, without the
interpreter's teardown (a rank blocked in a collective with a dead peer would otherwise hang).
The protocol is described in podium.distributed.launcher.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import InitProcessGroupKwargs
from pydantic import ValidationError

from podium.distributed.launcher import CONFIG_FILE, LAUNCH_DIR, RESULT_FILE, die_with_parent, write_json_report
from podium.distributed.world import launched_world_size, uses_cpu
from podium.errors import PodiumError
from podium.models.policy import security_policy
from podium.models.publish import pid_alive
from podium.rundir import read_json_object
from podium.stages import StageContext, call_stage, get_stage

log = logging.getLogger("podium")


def watch_parents(interval: float = 1.0) -> None:
    """Exit when the launcher or `podium run` is gone (a kill -9 of either leaves no rank behind)."""
    launcher = os.getppid()
    podium_run = int(os.environ.get("PODIUM_PARENT_PID", "0") or 0)

    def loop():
        while True:
            time.sleep(interval)
            if os.getppid() != launcher or (podium_run and not pid_alive(podium_run)):
                os._exit(1)

    threading.Thread(target=loop, daemon=True, name="podium-parent-watch").start()


def start_processes(timeout: float) -> None:
    """Join the process group with a collective `timeout`; the loop's Accelerator shares this state.

    No Accelerator is made here: under DeepSpeed ZeRO-3 every model transformers loads after the first
    Accelerator is partitioned (zero3_init_flag), which suits the trained model but not a judge.
    """
    PartialState(cpu=uses_cpu(), **InitProcessGroupKwargs(timeout=timedelta(seconds=timeout)).to_kwargs())


def report_failure(folder: Path, rank: int, world: int, error: BaseException) -> None:
    write_json_report(folder / f"error-rank{rank}.json", {
        "rank": rank, "world": world, "type": type(error).__name__, "message": str(error) or type(error).__name__,
        "podium_error": isinstance(error, PodiumError), "traceback": traceback.format_exc(), "time": time.time(),
    })


def run_worker(stage_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None, *, timeout: float = 1800.0,
               trust_remote_code: bool = False, allow_pickle: bool = False, show_progress: bool = True) -> int:
    """Run the stage in `stage_dir` as this rank; returns 0, or ends the process with status 1 on failure."""
    die_with_parent()
    watch_parents()
    stage_dir = Path(stage_dir)
    folder = stage_dir / LAUNCH_DIR
    rank, world = int(os.environ.get("RANK", "0")), launched_world_size()
    try:
        start_processes(timeout)
        record = read_json_object(folder / CONFIG_FILE)
        if not isinstance(record.get("config"), dict) or record.get("kind") is None:
            raise PodiumError(f"{folder / CONFIG_FILE}: missing or damaged; the worker runs a stage folder that "
                              "podium run prepared")
        spec = get_stage(record["kind"])
        try:
            cfg = spec.config.model_validate(record["config"])
        except ValidationError as e:
            raise PodiumError(f"{folder / CONFIG_FILE}: the stage's config does not validate: {e}") from None
        ctx = StageContext(name=record["name"], out_dir=stage_dir, run_dir=Path(run_dir) if run_dir else None,
                           kind=record["kind"], show_progress=show_progress and rank == 0)
        with security_policy(trust_remote_code, allow_pickle):
            metrics = call_stage(spec, cfg, ctx)
        PartialState().wait_for_everyone()
        if rank == 0:
            write_json_report(folder / RESULT_FILE, {"metrics": metrics, "world": world})
        return 0
    except BaseException as e:  # noqa: BLE001 - every failure, KeyboardInterrupt included, is reported
        try:
            report_failure(folder, rank, world, e)
        finally:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
