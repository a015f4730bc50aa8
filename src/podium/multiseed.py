"""Multi-seed runs: `podium run RECIPE --seeds 0,1,2` (or `seeds: [0, 1, 2]` in the recipe).

The recipe runs once per seed N into DIR/seed-N/, with the recipe seed set to N (podium.seeding:
how it reaches the stages; seed 0 is the recipe as written). Each seed-N is a complete run dir
(report.json, stage folders, report.md), so a card or report can be written from any of them.

A stage whose key is the same on two seeds runs once. Keys hash a stage's kind, settings and the
keys of what it reads, so a stage that takes no run seed and reads only such stages — a `tasks`
dataset, an `eval` of a shared model — has one key on every seed. The plan marks it `reuse` on the
later seeds, and when its turn comes its finished folder is copied from the earlier seed (hard links,
podium.rundir.copy_stage_dir) instead of run. A seed-N dir finished by an earlier invocation serves
the same way, and a seed already finished is simply cached.

Seeds run one after another, each under its own run-dir lock, while DIR's lock is held throughout. A
seed that fails is reported and the others still run. Then DIR/compare.json, compare.md and
compare_*.png (podium.cards.compare) give every metric's mean and 95 % interval across the seeds of
this invocation that finished, and the paired differences between evaluations of the same task.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from podium.cards.compare import compare_runs, write_compare
from podium.cards.report import write_report
from podium.errors import ConfigError, PodiumError
from podium.pipeline import run_plan
from podium.planning import PlannedStage, RunPlan, check_plan, make_plan
from podium.run_lock import RunDirLock
from podium.rundir import COMPARE_FILES, REPORT_FILE, files_problem, is_run_dir, read_done, seed_dir_name, seed_run_dirs

log = logging.getLogger("podium")


@dataclass
class SeedPlans:
    """One plan per seed, all under `run_dir` (DIR)."""

    run_dir: Path
    plans: dict[int, RunPlan]
    label: str = "runs"  # the group's label in compare.json (the recipe's name)


@dataclass
class SeedsResult:
    run_dir: Path
    reports: dict[int, dict] = field(default_factory=dict)  # seed -> report.json of its run
    failed: dict[int, str] = field(default_factory=dict)  # seed -> error message
    compare: dict[str, Path] = field(default_factory=dict)  # what write_compare wrote


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' or '0-2,7' -> [0, 1, 2, ...]; seeds are distinct integers >= 0."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: expected integers >= 0 such as 0,1,2 or 0-4") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: expected integers >= 0 such as 0,1,2 or 0-4")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def finished_elsewhere(ps: PlannedStage, run_dir: Path, seed: int) -> Path | None:
    """A stage folder of the same name in another DIR/seed-N whose completion marker holds this stage's key."""
    for other in seed_run_dirs(run_dir):
        if other.name == seed_dir_name(seed):
            continue
        folder = other / ps.name
        done = read_done(folder) if folder.is_dir() and not folder.is_symlink() else None
        if done is not None and done.get("key") == ps.key:
            return folder
    return None


def mark_shared(plan: RunPlan, earlier: dict[int, RunPlan], run_dir: Path, seed: int) -> None:
    """Stages of `plan` with the key of a stage of an earlier seed (run by then) or of a finished one in DIR: `reuse`."""
    for ps in plan.stages:
        if ps.status == "cached":
            continue
        donor = next((e.out_dir for p in earlier.values() for e in p.stages if e.name == ps.name and e.key == ps.key),
                     None) or finished_elsewhere(ps, run_dir, seed)
        if donor is not None:
            ps.status, ps.shared_from = "reuse", donor


def seeds_dir_problem(run_dir: Path) -> str | None:
    """Why DIR may not hold a multi-seed run, or None."""
    if run_dir.exists() and not run_dir.is_dir():
        return f"{run_dir} is a file, not a directory"
    if is_run_dir(run_dir) or (run_dir / REPORT_FILE).exists():
        return f"{run_dir} is the run dir of a single run; choose another --output for a multi-seed run"
    if not run_dir.exists() or seed_run_dirs(run_dir):
        return None
    return files_problem(run_dir, COMPARE_FILES)


def make_seed_plans(recipe_path: str, seeds: list[int], overrides: list[str] = (), run_dir: str | Path = "",
                    until: str | None = None, label: str | None = None) -> SeedPlans:
    """The plan of every seed (recipe seed = N, output DIR/seed-N), with stages shared across seeds marked `reuse`."""
    run_dir = Path(run_dir).resolve()
    if problem := seeds_dir_problem(run_dir):
        raise PodiumError(problem)
    plans: dict[int, RunPlan] = {}
    for seed in seeds:
        plan = make_plan(recipe_path, [*overrides, "seeds=null", f"seed={seed}"],
                         output=str(run_dir / seed_dir_name(seed)), until=until)
        mark_shared(plan, plans, run_dir, seed)
        plans[seed] = plan
    return SeedPlans(run_dir, plans, label or next(iter(plans.values())).recipe.name or Path(recipe_path).stem)


def check_seed_plans(seed_plans: SeedPlans) -> None:
    """Every seed's plan_problems at once (what `--dry-run` reports); nothing has run."""
    problems = []
    for seed, plan in seed_plans.plans.items():
        try:
            check_plan(plan)
        except PodiumError as e:
            problems.append(f"seed {seed}: {e}")
    if problems:
        raise PodiumError("\n".join(problems))


def run_seeds(seed_plans: SeedPlans, show_progress: bool = True) -> SeedsResult:
    """Run every seed's plan in turn under DIR's lock, then write DIR/compare.json, compare.md and plots."""
    check_seed_plans(seed_plans)
    result = SeedsResult(seed_plans.run_dir)
    with RunDirLock(seed_plans.run_dir, "multi-seed dir"):
        for seed, plan in seed_plans.plans.items():
            log.info(f"seed {seed}: {plan.run_dir}")
            try:
                result.reports[seed] = run_plan(plan, show_progress=show_progress)
                write_report(plan.run_dir)
            except PodiumError as e:
                log.error(f"seed {seed} failed: {e}")
                result.failed[seed] = str(e)
            except Exception as e:  # noqa: BLE001 - one seed's crash must not discard the others; it is reported
                log.exception(f"seed {seed} failed")
                result.failed[seed] = f"{type(e).__name__}: {e}"
        finished = [seed_plans.plans[s].run_dir for s in result.reports]
        if finished:
            result.compare = write_compare(compare_runs({seed_plans.label: finished}), seed_plans.run_dir)
    return result


def compare_groups(paths: list[str]) -> dict[str, list[Path]]:
    """Groups for `podium compare`: `LABEL=DIR` is DIR under LABEL; a folder of seed-N run dirs is a group named
    after it; the plain run dirs given form one group, "runs"."""
    groups: dict[str, list[Path]] = {}
    for text in paths:
        label, _, folder = text.partition("=") if "=" in text and not Path(text).exists() else ("", "", text)
        p = Path(folder)
        if seed_run_dirs(p) and not is_run_dir(p):
            runs, label = seed_run_dirs(p), label or p.resolve().name
        elif is_run_dir(p):
            runs, label = [p], label or "runs"
        else:
            raise PodiumError(f"{p}: not a run dir (no report.json, no stage folders) and no seed-N run dirs inside")
        groups.setdefault(label, []).extend(runs)
    return groups


def compare_output_problem(out: Path) -> str | None:
    """Why compare.json / compare.md may not be written into `out`: they exist there and are not podium's."""
    if out.exists() and not out.is_dir():
        return f"{out} is a file, not a directory"
    if not out.exists() or seed_run_dirs(out):
        return None
    try:
        written = json.loads((out / "compare.json").read_text())
    except (OSError, ValueError):
        written = None
    if isinstance(written, dict) and "groups" in written:
        return None
    return files_problem(out, COMPARE_FILES)


def compare_dirs(paths: list[str], output: str | None = None, plots: bool = True) -> tuple[dict, dict[str, Path]]:
    """What `podium compare DIR... [--output OUT]` does: compare.json, compare.md and plots of the runs in OUT.

    OUT defaults to the one multi-seed dir given."""
    groups = compare_groups(paths)
    if output is None:
        if len(paths) != 1 or not seed_run_dirs(paths[0]):
            raise PodiumError("podium compare: give --output DIR for compare.json and compare.md (the default is "
                              "the folder of seed-N runs when only one is given)")
        output = paths[0]
    out = Path(output)
    if problem := compare_output_problem(out):
        raise PodiumError(problem)
    result = compare_runs(groups)
    return result, write_compare(result, out, plots=plots)
