"""Recipe -> plan: every stage validated, its references resolved, its content key computed, and its status
(run, resume, cached) read from its folder; what would stop the run before any stage runs (`plan_problems`).

A stage's key hashes its kind, its resolved config, the keys of the stages it reads and the content of local
files it names, so an unchanged stage is skipped and a change reruns it and everything downstream. A stage
folder without a marker whose key matches is resumed (training stages continue from their last checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from podium.config import Located, format_validation_error
from podium.data.source_check import source_problems
from podium.data.stage_sources import StageView
from podium.distributed.spec import LaunchSpec, plan_launch, train_key
from podium.errors import ConfigError, PodiumError
from podium.models.publish import name_problem
from podium.ownership import overlap_problem
from podium.preflight import late_problems
from podium.recipe import Recipe, load_recipe, run_dir_of
from podium.recipe_refs import resolve_refs
from podium.refs import iter_refs
from podium.rundir import (
    PLOTS_DIR,
    made_by_podium,
    read_done,
    read_stage_record,
    run_dir_problem,
    stage_dir_problem,
    stage_output_problem,
)
from podium.seeding import apply_run_seed
from podium.stages import STAGES, load_all_stages

STAGE_NAME = re.compile(r"[A-Za-z0-9_\-]+")
# Stage names that are folders of the run-dir layout itself (podium.rundir).
RESERVED_STAGE_NAMES = (PLOTS_DIR,)


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


def make_plan(recipe_path: str, overrides: list[str] = (), output: str | None = None, until: str | None = None) -> RunPlan:
    """Validate a recipe and decide, stage by stage, what runs; `until` keeps the stages up to and including it.

    Every stage is validated even when `until` cuts the plan short, so a typo further down is found now.
    """
    load_all_stages()
    located, recipe = load_recipe(recipe_path, overrides)
    run_dir = run_dir_of(recipe_path, recipe, output)
    planned: dict[str, PlannedStage] = {}
    for i, raw in enumerate(recipe.stages):
        ps = plan_stage(("stages", i), raw, recipe, located, run_dir, planned)
        planned[ps.name] = ps
    stages = list(planned.values())
    if until is not None:
        if until not in planned:
            raise ConfigError(f"--until {until!r}: no such stage in {recipe_path} (stages: {', '.join(planned)})")
        stages = stages[: list(planned).index(until) + 1]
    return RunPlan(recipe, recipe_path, run_dir, stages)


def plan_stage(base: tuple, raw, recipe: Recipe, located: Located, run_dir: Path,
               planned: dict[str, PlannedStage]) -> PlannedStage:
    """One stage of the recipe (at key path `base`), after the stages `planned` before it: validated, its
    references resolved, its launch planned, its key computed and its status read from its folder."""
    name, kind = stage_header(base, raw, located, run_dir, planned)
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
    key = stage_key(kind, cfg, deps, hashed, planned, recipe, launch)
    ps = PlannedStage(name, kind, cfg, key, run_dir / name, deps, launch=launch)
    refresh_status(ps)
    ps.missing = missing
    ps.inputs = [value for value, _ in hashed if not value.startswith("@")]
    return ps


def stage_header(base: tuple, raw, located: Located, run_dir: Path, planned: dict) -> tuple[str, str]:
    """The stage's (name, kind), checked: both given, a known kind, a new name that is one safe folder name."""
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
    return name, kind


def stage_key(kind: str, cfg, deps: list[str], hashed: list, planned: dict[str, PlannedStage], recipe: Recipe,
              launch: LaunchSpec | None) -> str:
    """The stage's content key: SHA-256 of its kind, resolved config, inputs and the recipe's security policy."""
    # Upstream outputs enter the key by their stage's key, not their path, so a run dir can move.
    config_text = cfg.model_dump_json()
    for dep in deps:
        config_text = config_text.replace(json.dumps(str(planned[dep].out_dir.resolve()))[1:-1], f"@{dep}")
    # `inputs` holds each upstream stage's key and each local file's fingerprint.
    key_src = {"kind": kind, "config": json.loads(config_text), "inputs": sorted(hashed),
               "policy": [recipe.trust_remote_code, recipe.allow_pickle]}
    if STAGES[kind].distributed == "train":  # the global batch counts the processes (one: in-process)
        key_src["config"], key_src["launch"] = train_key(launch, key_src["config"])
    return hashlib.sha256(json.dumps(key_src, sort_keys=True, default=str).encode()).hexdigest()


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
