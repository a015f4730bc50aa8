"""`podium run` on a machine whose `machine_rank` is not 0: a multi-node run, seen from the other machines.

Machine 0 runs the recipe as usual: light stages in-process, each distributed stage as an `accelerate
launch` child, completion markers and report.json. Every other machine runs the same command with its
own `launch.machine_rank=N` and follows: for each stage that spans machines (`num_machines > 1`) it
waits until machine 0 has written the stage's stage.json, starts its own ranks with the same launch
(they join machine 0's over `main_process_ip:main_process_port`), and waits for the stage's
completion marker; every other stage it leaves to machine 0 and waits for its marker. When machine 0
reports a distributed stage failed, the other machines stop with its message; a light stage that fails
on machine 0 leaves them waiting (they say so every minute). The run directory must be on a filesystem
all machines share, at the same path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from podium.distributed.launcher import LAUNCH_DIR, machine0_failed, run_distributed
from podium.errors import PodiumError
from podium.rundir import read_done, read_stage_record

log = logging.getLogger("podium")


def machine_rank(stages) -> int:
    """This machine's rank in the plan's launches (0 when nothing is launched)."""
    return max((ps.launch.machine_rank for ps in stages if ps.launch is not None), default=0)


def wait_until(ready: Callable[[], bool], what: str, failed: Callable[[], str | None] = lambda: None,
               poll: float = 1.0, say_every: float = 60.0) -> None:
    """Wait for `ready()`; a message from `failed()` (machine 0 gave up on the stage) ends the wait with it."""
    start = last = time.monotonic()
    while not ready():
        if message := failed():
            raise PodiumError(f"machine 0: {message}")
        time.sleep(poll)
        if time.monotonic() - last >= say_every:
            last = time.monotonic()
            log.info(f"still waiting for machine 0: {what} ({last - start:.0f}s)")


def follow_plan(plan, show_progress: bool = True) -> None:
    """Take this machine's part in every stage of `plan` (a podium.planning.RunPlan) that machine 0 launches."""
    rank = machine_rank(plan.stages)
    since = time.time()
    for ps in plan.stages:
        if ps.status == "cached":
            continue
        failed = lambda ps=ps: machine0_failed(ps.out_dir / LAUNCH_DIR, since)
        if ps.launch is not None and ps.launch.num_machines > 1:
            wait_until(lambda ps=ps: getattr(read_stage_record(ps.out_dir), "key", None) == ps.key,
                       f"stage {ps.name!r} to start", failed)
            log.info(f"[{ps.name}] machine {rank}: starting this machine's ranks")
            run_distributed(ps.launch, ps.kind, ps.config, ps.out_dir, plan.run_dir, log=log, show_progress=show_progress,
                            trust_remote_code=plan.recipe.trust_remote_code, allow_pickle=plan.recipe.allow_pickle)
        wait_until(lambda ps=ps: (read_done(ps.out_dir) or {}).get("key") == ps.key, f"stage {ps.name!r} to finish",
                   failed)
        log.info(f"[{ps.name}] done on machine 0")
