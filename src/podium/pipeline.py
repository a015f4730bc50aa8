"""Recipes as pipelines: plan, content hashes, skip and resume, run directory, report.

Each stage runs in DIR/<stage>/ (layout: podium.rundir): the pipeline writes `stage.json`
(resolved config and key) first and the completion marker `.podium-done` last. A stage's key hashes its
kind, its resolved config, the keys of the stages it reads and the content of local
files it names, so an unchanged stage is skipped and a change reruns it and
everything downstream. A stage folder without a marker whose key matches is resumed
(training stages continue from their last checkpoint).

Nothing the user wrote is lost: a run holds the run dir's lock (podium.run_lock) while it runs, a
stage folder is deleted only when podium made it (podium.rundir.remove_stage_dir), and every such
conflict is found when the plan is made, so `--dry-run` reports it and no stage runs before it.
The recipe's `seed` reaches the stages as podium.seeding says; `seeds:` runs are podium.multiseed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from podium.cards.report import write_report
from podium.config import Located, NumberRules, format_validation_error, load_yaml, parse_override, set_in, validate
from podium.data.source_check import source_problems
from podium.data.stage_sources import StageView
from podium.distributed.launcher import run_distributed
from podium.distributed.spec import LaunchSpec, check_environment, plan_launch, train_key
from podium.errors import ConfigError, PodiumError
from podium.fingerprint import fingerprint
from podium.hub import check_hub_inputs, looks_local
from podium.limits import path_text_problem
from podium.models.io import security_policy
from podium.models.publish import name_problem
from podium.ownership import overlap_problem
from podium.preflight import late_problems
from podium.refs import iter_refs
from podium.run_lock import RunDirLock, check_enclosing, folder_locks
from podium.rundir import (
    PLOTS_DIR,
    StageEntry,
    StageRecord,
    copy_stage_dir,
    made_by_podium,
    read_done,
    read_stage_record,
    remove_stage_dir,
    run_dir_problem,
    stage_dir_problem,
    stage_output_problem,
    write_run_report,
    write_stage_done,
    write_stage_record,
)
from podium.seeding import apply_run_seed
from podium.stages import STAGES, StageContext, call_stage, load_all_stages

REF = re.compile(r"^@([A-Za-z0-9_\-]+)(?:\.([A-Za-z0-9_\-]+))?$")
STAGE_NAME = re.compile(r"[A-Za-z0-9_\-]+")
# Stage names that are folders of the run-dir layout itself (podium.rundir).
RESERVED_STAGE_NAMES = (PLOTS_DIR,)
log = logging.getLogger("podium")


def path_component_problem(name: str) -> str | None:
    """Why `name` is not one safe folder name (it would leave its parent folder), or None."""
    if not name or name in (".", "..") or name != name.strip():
        return "must be a folder name (not empty, '.' or '..', no leading or trailing space)"
    if "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        return "must be a single folder name (no '/', '\\' or control characters)"
    return None


class Recipe(NumberRules):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="the run's name; runs/<name> is its default output dir")
    description: str | None = None
    seed: int = Field(0, ge=0, description="the run seed: how it reaches the stages is podium.seeding")
    seeds: list[int] | None = Field(None, min_length=1, description="run once per seed into OUTPUT/seed-N "
                                    "(podium.multiseed)")
    output_dir: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    # Default `launch:` of the stages that can run on several processes (podium.distributed.spec).
    launch: dict | None = None
    stages: list[dict] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        problem = None if value is None else path_component_problem(value)
        if problem:
            raise PydanticCustomError("podium", "{message}", {"message": f"the recipe name {problem}, since "
                                      "runs/<name> is the default output dir"})
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if any(s < 0 for s in value):
                raise ValueError("seeds are integers >= 0")
            if len(set(value)) != len(value):
                raise ValueError(f"seeds repeat: {value}")
        return value


@dataclass
class PlannedStage:
    name: str
    kind: str
    config: Any
    key: str
    out_dir: Path
    deps: list[str] = field(default_factory=list)
    # Local inputs that do not exist (file:line: why), and, with status "reuse" (the key of a finished stage
    # elsewhere: another seed's run dir, podium.multiseed), that stage's folder.
    missing: list[str] = field(default_factory=list)
    shared_from: Path | None = None
    status: str = "run"
    launch: LaunchSpec | None = None  # run as an `accelerate launch` child (None: in-process)
    note: str | None = None  # why a finished stage runs again (its output changed since it finished)
    inputs: list[str] = field(default_factory=list)  # the existing local files and folders it reads


@dataclass
class RunPlan:
    recipe: Recipe
    path: str
    run_dir: Path
    stages: list[PlannedStage]


def resolve_refs(value, keypath, earlier: dict[str, PlannedStage], located: Located, stage_name: str, deps: list,
                 hashed: list, ref_paths: set, missing: list | None = None):
    """Replace "@stage[.output]" strings by paths; collect dependencies and hash inputs.

    `ref_paths` are the key paths of the stage's typed references (podium.refs: models, datasets,
    input files). Such a reference to a local path enters the stage's key by its content
    fingerprint; a relative one that does not exist from the working directory but does next to
    the recipe is taken from the recipe's folder (recipes can ship their small data files). A
    reference that names a local path which exists in neither place goes to `missing`.
    """
    missing = [] if missing is None else missing
    if isinstance(value, dict):
        return {k: resolve_refs(v, keypath + (k,), earlier, located, stage_name, deps, hashed, ref_paths, missing)
                for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, keypath + (i,), earlier, located, stage_name, deps, hashed, ref_paths, missing)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if value.startswith("@"):
        m = REF.match(value)
        where = located.where(keypath)
        if not m or m.group(1) not in earlier:
            known = ", ".join(earlier) or "none"
            raise ConfigError(f"{where}: stage {stage_name!r}: {value!r} refers to no earlier stage (earlier: {known})")
        ref, out = m.group(1), m.group(2)
        outputs = STAGES[earlier[ref].kind].outputs
        if out is not None and out not in outputs:
            raise ConfigError(f"{where}: stage {stage_name!r}: stage {ref!r} has no output {out!r} "
                              f"(outputs: {', '.join(outputs)})")
        rel = outputs[out] if out else next(iter(outputs.values()))
        if ref not in deps:
            deps.append(ref)
        hashed.append((value, earlier[ref].key))
        return str((earlier[ref].out_dir / rel).resolve())
    if keypath[2:] not in ref_paths:  # keypath = ("stages", i, key...)
        return value
    if problem := path_text_problem(value):  # before pathlib sees it (it raises on such names)
        missing.append(f"{located.where(keypath)}: stage {stage_name!r}: {value[:60]!r}... {problem}")
        return value
    if value.strip() and not Path(value).is_absolute() and not os.path.exists(value):
        beside = Path(located.path).parent / value
        if os.path.exists(beside):
            value = str(beside.resolve())
    if os.path.exists(value):
        try:
            hashed.append((value, fingerprint(Path(value))))
        except PodiumError as e:  # a FIFO or device named as an input: found now, never opened
            missing.append(f"{located.where(keypath)}: stage {stage_name!r}: {e}")
    elif any(looks_local(part) and not os.path.exists(part) for part in value.split("+")):  # BASE+LORA
        missing.append(f"{located.where(keypath)}: stage {stage_name!r}: {value!r} does not exist (looked in "
                       f"{os.getcwd()} and beside the recipe)")
    return value


def make_plan(recipe_path: str, overrides: list[str] = (), output: str | None = None, until: str | None = None) -> RunPlan:
    """Validate a recipe and decide, stage by stage, what runs; `until` keeps the stages up to and including it.

    Every stage is validated even when `until` cuts the plan short, so a typo further down is found now.
    """
    load_all_stages()
    located = load_yaml(recipe_path)
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError(f"{located.where()}: a recipe is a mapping with a 'stages' list")
    names = [s.get("name") for s in data.get("stages") or [] if isinstance(s, dict)]
    for ov in overrides:
        keys, value = parse_override(ov)
        if keys[0] in names and len(keys) > 1:
            stage_data = data["stages"][names.index(keys[0])]
            set_in(stage_data, keys[1:], value)
        elif keys[0] in Recipe.model_fields and keys[0] != "stages":
            set_in(data, keys, value)
        else:
            raise ConfigError(f"override {ov!r}: {keys[0]!r} is neither a stage ({', '.join(map(str, names))}) "
                              "nor a recipe key")
    recipe = validate(Recipe, data, located, (), "recipe")
    if recipe.seeds is not None and "seed" in data:
        raise ConfigError(f"{located.where(('seed',))}: give the recipe `seed` or `seeds`, not both")
    default_name = recipe.name or Path(recipe_path).stem
    if not (output or recipe.output_dir) and path_component_problem(default_name):
        raise ConfigError(f"{recipe_path}: the default output runs/{default_name} is not one folder: name the "
                          "recipe or pass --output")
    run_dir = Path(output or recipe.output_dir or Path("runs") / default_name).resolve()
    if why := name_problem(run_dir):  # before any file system call with it (a long name fails those too)
        raise ConfigError(f"{recipe_path}: run dir {run_dir}: {why}")

    planned: dict[str, PlannedStage] = {}
    for i, raw in enumerate(recipe.stages):
        base = ("stages", i)
        where = located.where(base)
        if not isinstance(raw, dict) or "name" not in raw or "kind" not in raw:
            raise ConfigError(f"{where}: each stage needs a 'name' and a 'kind'")
        name, kind = str(raw["name"]), raw["kind"]
        if not isinstance(kind, str):
            raise ConfigError(f"{located.where(base + ('kind',))}: the stage kind is a name such as 'sft', got {kind!r}")
        if name in planned:
            raise ConfigError(f"{where}: duplicate stage name {name!r}")
        if not STAGE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: stage name {name!r} may only use letters, digits, '_' and '-'")
        if why := name_problem(run_dir / name):
            raise ConfigError(f"{where}: stage name: {why}")
        if name in RESERVED_STAGE_NAMES:
            raise ConfigError(f"{where}: stage name {name!r} is a folder of the run dir itself; choose another")
        if kind not in STAGES:
            raise ConfigError(f"{located.where(base + ('kind',))}: unknown stage kind {kind!r}; known kinds: "
                              f"{', '.join(sorted(STAGES))}")
        settings = {k: v for k, v in raw.items() if k not in ("name", "kind", "launch")}
        spec = STAGES[kind]
        deps, hashed = [], []
        settings, missing = apply_run_seed(spec, settings, recipe.seed), []
        ref_paths = {path for path, _, _ in iter_refs(spec.config, settings)}
        resolved = resolve_refs(settings, base, planned, located, name, deps, hashed, ref_paths, missing)
        try:
            cfg = spec.config.model_validate(resolved)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, located, base, f"stage {name!r}")) from None
        launch = plan_launch(recipe.launch, raw, kind=kind, distributed=spec.distributed, cfg=cfg, located=located,
                             base=base, name=name)
        # Upstream outputs enter the key by their stage's key, not their path, so a run dir can move.
        config_text = cfg.model_dump_json()
        for dep in deps:
            config_text = config_text.replace(json.dumps(str(planned[dep].out_dir.resolve()))[1:-1], f"@{dep}")
        # `inputs` holds each upstream stage's key and each local file's fingerprint.
        key_src = {"kind": kind, "config": json.loads(config_text), "inputs": sorted(hashed),
                   "policy": [recipe.trust_remote_code, recipe.allow_pickle]}
        if spec.distributed == "train":  # the global batch counts the processes (one: in-process)
            key_src["config"], key_src["launch"] = train_key(launch, key_src["config"])
        key = hashlib.sha256(json.dumps(key_src, sort_keys=True, default=str).encode()).hexdigest()
        ps = PlannedStage(name, kind, cfg, key, run_dir / name, deps, launch=launch)
        refresh_status(ps)
        ps.missing = missing
        ps.inputs = [value for value, _ in hashed if not value.startswith("@")]
        planned[name] = ps
    stages = list(planned.values())
    if until is not None:
        if until not in planned:
            raise ConfigError(f"--until {until!r}: no such stage in {recipe_path} (stages: {', '.join(planned)})")
        stages = stages[: list(planned).index(until) + 1]
    return RunPlan(recipe, recipe_path, run_dir, stages)


def plan_problems(plan: RunPlan) -> list[str]:
    """What stops `plan` before any stage runs: local inputs that do not exist, and stage folders or
    run-dir files that podium did not write (podium.rundir). `--dry-run` reports them; `run_plan` refuses."""
    problems = [why] if (why := run_dir_problem(plan.run_dir)) else []
    for ps in plan.stages:
        if ps.status == "cached":
            continue
        problems.extend(ps.missing)
        if why := stage_dir_problem(ps.out_dir):
            problems.append(f"stage {ps.name!r}: {why}")
        # A stage folder is replaced when the stage runs: it must not be, hold or lie inside any stage's input.
        for qs in plan.stages:
            if why := overlap_problem(ps.out_dir, qs.inputs, f"stage {ps.name!r}'s folder"):
                problems.append(why + (f" (read by stage {qs.name!r}; refer to it as '@{ps.name}')"
                                       if qs is not ps else ""))
    # The first rows of every data source, read as the stage will read them (podium.data.source_check).
    problems.extend(source_problems([StageView(ps.name, ps.kind, ps.config, ps.out_dir) for ps in plan.stages],
                                    only={ps.name for ps in plan.stages if ps.status in ("run", "resume")}))
    return problems + late_problems(plan.run_dir, plan.stages)


def check_plan(plan: RunPlan) -> None:
    """Raise one PodiumError listing `plan_problems` (nothing has run)."""
    problems = plan_problems(plan)
    if problems:
        raise PodiumError("cannot run (nothing was run):\n  " + "\n  ".join(problems))


def refresh_status(ps: PlannedStage) -> None:
    """Recompute a stage's cached / resume / run status from its folder (another run may have changed it
    between planning and taking the lock)."""
    done, record = read_done(ps.out_dir), read_stage_record(ps.out_dir)
    if done is not None and done.get("key") == ps.key:
        # Reused only as it was finished: a file changed, truncated or removed since reruns the stage.
        ps.note = stage_output_problem(ps.out_dir) if made_by_podium(ps.out_dir) else None
        if ps.note is None:
            ps.status = "cached"
            return
        ps.status = "run"
        ps.note = f"its output changed since it finished ({ps.note})"
    elif ps.status != "reuse":
        ps.status = "resume" if record is not None and record.key == ps.key else "run"


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
            entry = StageEntry(ps.name, ps.kind, "ran", round(seconds, 3), metrics)
            log.info(f"[{ps.name}] done in {seconds:.1f}s {format_metrics(metrics)}")
        entries.append(entry)
        report = write_run_report(plan.run_dir, str(plan.path), plan.recipe.name, entries, plan.recipe.seed)
    return report


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

