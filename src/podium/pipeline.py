"""Running a plan: skip and resume, the run directory, the report.

Each stage runs in DIR/<stage>/ (layout: podium.rundir): the pipeline writes `stage.json`
(resolved config and key) first and the completion marker `.podium-done` last. How a plan is made
(validation, references, content keys, status) is podium.planning; the recipe's schema and overrides,
podium.recipe.

Nothing the user wrote is lost: a run holds the run dir's lock (podium.run_lock) while it runs, a
stage folder is deleted only when podium made it (podium.rundir.remove_stage_dir), and every such
conflict is found when the plan is made, so `--dry-run` reports it and no stage runs before it.
The recipe's `seed` reaches the stages as podium.seeding says; `seeds:` runs are podium.multiseed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from podium.cards.report import write_report
from podium.distributed.environment import check_environment
from podium.distributed.launcher import run_distributed
from podium.errors import ConfigError
from podium.hub import check_hub_inputs
from podium.models.policy import security_policy
from podium.planning import PlannedStage, RunPlan, check_plan, make_plan, refresh_status
from podium.run_lock import RunDirLock, check_enclosing, folder_locks
from podium.rundir import (
    StageEntry,
    StageRecord,
    copy_stage_dir,
    read_done,
    remove_stage_dir,
    write_run_report,
    write_stage_done,
    write_stage_record,
)
from podium.stages import STAGES, StageContext, call_stage

log = logging.getLogger("podium")


def stage_record(ps: PlannedStage) -> StageRecord:
    return StageRecord(ps.name, ps.kind, ps.key, ps.deps, json.loads(ps.config.model_dump_json(by_alias=True)))


def adopt_shared(ps: PlannedStage, run_dir: Path) -> None:
    """A stage planned as `reuse`: copy the finished folder of the same key (another seed's run dir) and mark
    it cached; when that folder is not there (or not finished with this key) the stage runs."""
    if os.path.lexists(ps.out_dir):
        remove_stage_dir(ps.out_dir, run_dir)
    if ps.shared_from is not None and copy_stage_dir(ps.shared_from, ps.out_dir, ps.key, stage_record(ps)):
        log.info(f"[{ps.name}] same key as {ps.shared_from}: its finished folder is reused")
        ps.status = "cached"
    else:
        ps.status = "run"


def run_plan(plan: RunPlan, show_progress: bool = True) -> dict:
    """Run every stage not cached, in order, holding the run dir's lock; returns the run's record (also
    written to report.json after each stage).

    report.md and its plots are rendered from the run dir by `podium.cards.report.write_report`
    (`run_recipe` and `podium run` call it).
    """
    check_plan(plan)
    check_hub_inputs([(ps.name, ps.kind, json.loads(ps.config.model_dump_json(by_alias=True))) for ps in plan.stages
                      if ps.status != "cached"])
    check_environment([ps.launch for ps in plan.stages if ps.status != "cached" and ps.launch is not None])
    check_enclosing(plan.run_dir, "run dir", itself=False)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    # The run dir's lock, and each stage folder's (the lock a command run alone takes on a folder it writes).
    with RunDirLock(plan.run_dir, "run dir"), folder_locks(ps.out_dir for ps in plan.stages):
        for ps in plan.stages:
            refresh_status(ps)
        check_plan(plan)
        return run_stages(plan, show_progress)


def run_stages(plan: RunPlan, show_progress: bool = True) -> dict:
    """The stages of `plan` in order (`run_plan` holds the run dir's lock around this)."""
    entries: list[StageEntry] = []
    report: dict = {}
    for ps in plan.stages:
        if ps.status == "reuse":
            adopt_shared(ps, plan.run_dir)
        if ps.status == "cached":
            done = read_done(ps.out_dir) or {}
            entry = StageEntry(ps.name, ps.kind, "cached", done.get("seconds", 0.0), done.get("metrics", {}))
            log.info(f"[{ps.name}] cached ({ps.kind})")
        else:
            entry = run_planned_stage(ps, plan, show_progress)
        entries.append(entry)
        report = write_run_report(plan.run_dir, str(plan.path), plan.recipe.name, entries, plan.recipe.seed)
    return report


def run_planned_stage(ps: PlannedStage, plan: RunPlan, show_progress: bool) -> StageEntry:
    """Run one stage into a fresh (or resumed) folder: `stage.json` first, the stage function (in this process or
    as a distributed launch), then `.podium-done` with its metrics."""
    if ps.note:
        log.warning(f"[{ps.name}] {ps.note}: running it again")
    if ps.status == "run" and os.path.lexists(ps.out_dir):
        remove_stage_dir(ps.out_dir, plan.run_dir)  # stale output of another config; only if podium made it
    ps.out_dir.mkdir(parents=True, exist_ok=True)
    write_stage_record(ps.out_dir, StageRecord(ps.name, ps.kind, ps.key, ps.deps,
                                               json.loads(ps.config.model_dump_json(by_alias=True))))
    log.info(f"[{ps.name}] {'resuming' if ps.status == 'resume' else 'running'} ({ps.kind})")
    t0 = time.perf_counter()
    ctx = StageContext(name=ps.name, out_dir=ps.out_dir, run_dir=plan.run_dir, kind=ps.kind,
                       show_progress=show_progress)
    if ps.launch is not None:  # every rank runs the stage from its stage.json (podium.distributed)
        metrics = run_distributed(ps.launch, ps.kind, ps.config, ps.out_dir, plan.run_dir, log=log,
                                  show_progress=show_progress,
                                  trust_remote_code=plan.recipe.trust_remote_code,
                                  allow_pickle=plan.recipe.allow_pickle)
    else:
        with security_policy(plan.recipe.trust_remote_code, plan.recipe.allow_pickle):
            metrics = call_stage(STAGES[ps.kind], ps.config, ctx)
    seconds = time.perf_counter() - t0
    metrics = {k: v for k, v in metrics.items() if v is not None}
    write_stage_done(ps.out_dir, ps.key, seconds, metrics)
    log.info(f"[{ps.name}] done in {seconds:.1f}s {format_metrics(metrics)}")
    return StageEntry(ps.name, ps.kind, "ran", round(seconds, 3), metrics)


def format_metrics(metrics: dict) -> str:
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
             if isinstance(v, (int, float)) and "seconds" not in k}
    return json.dumps(shown) if shown else ""


def run_recipe(recipe_path: str, overrides: list[str] = (), output: str | None = None, dry_run: bool = False,
               show_progress: bool = True, until: str | None = None) -> dict | RunPlan:
    """Plan and run a recipe from Python (what `podium run` does): returns the run's record (report.json);
    writes report.md with its plots too. With `dry_run`, returns the plan and runs nothing."""
    plan = make_plan(recipe_path, overrides, output, until=until)
    if plan.recipe.seeds:
        raise ConfigError(f"{recipe_path}: a recipe with `seeds:` runs once per seed: `podium run`, or "
                          "podium.multiseed.make_seed_plans + run_seeds from Python")
    if dry_run:
        return plan
    report = run_plan(plan, show_progress=show_progress)
    log.info(f"report: {write_report(plan.run_dir)}")
    return report

