"""`podium run RECIPE.yaml [--output DIR] [--seeds 0,1,2] [--dry-run] [--until STAGE] [key=value ...]`.

With `--seeds` (or `seeds:` in the recipe) the recipe runs once per seed into DIR/seed-N and
DIR/compare.md compares them (podium.multiseed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rich.console import Console
from rich.table import Table

from podium.cards.report import fmt, write_report
from podium.distributed.environment import check_environment, environment_problems
from podium.distributed.follow import follow_plan, machine_rank
from podium.distributed.launcher import format_command, launch_command
from podium.errors import PodiumError
from podium.multiseed import SeedPlans, SeedsResult, check_seed_plans, make_seed_plans, parse_seeds, run_seeds
from podium.pipeline import run_plan
from podium.planning import RunPlan, check_plan, make_plan
from podium.training.memory_plan import plan_memory_lines

# What a practitioner looks at first, in this order; the full set is in report.json and report.md.
HEADLINE_KEYS = ("accuracy", "win_rate", "baseline_accuracy", "train_loss", "loss", "rewards/margins",
                 "rewards/accuracies", "pairs", "steps", "parameters", "num_layers")
log = logging.getLogger("podium")


def headline(metrics: dict, limit: int = 4) -> str:
    """A short summary of a stage's metrics for the terminal: the headline keys present, at most `limit`."""
    shown = [k for k in HEADLINE_KEYS if isinstance(metrics.get(k), (int, float))][:limit]
    rest = sum(isinstance(v, (int, float)) for v in metrics.values()) - len(shown)
    if not shown:
        return f"{rest} metrics" if rest else ""
    return ", ".join(f"{k}={fmt(metrics[k])}" for k in shown) + (f" (+{rest} more)" if rest else "")


def print_plan(plan: RunPlan, console=None) -> None:
    console = console or Console()
    table = Table(title=f"{plan.recipe.name or plan.path} -> {plan.run_dir}")
    for col in ("#", "stage", "kind", "status", "reads", "key"):
        table.add_column(col)
    for i, s in enumerate(plan.stages, 1):
        table.add_row(str(i), s.name, s.kind, s.status, ", ".join(s.deps) or "-", s.key[:12])
    console.print(table)
    for s in plan.stages:
        if s.note:  # a finished stage whose files changed since: it runs again
            console.print(f"[{s.name}] {s.note}: it runs again", markup=False, highlight=False, soft_wrap=True)


def print_launches(plan: RunPlan, show_progress: bool = True, console=None) -> None:
    """The exact `accelerate launch` command of each distributed stage that will run, and what stops it here."""
    console = console or Console()
    for s in plan.stages:
        if s.launch is None or s.status == "cached":
            continue
        argv, env = launch_command(s.launch, s.out_dir, plan.run_dir, trust_remote_code=plan.recipe.trust_remote_code,
                                   allow_pickle=plan.recipe.allow_pickle, show_progress=show_progress)
        n = s.launch.num_processes
        console.print(f"[{s.name}] {n} process{'es' if n != 1 else ''}: {format_command(argv, env)}",
                      markup=False, highlight=False, soft_wrap=True)
        for problem in environment_problems(s.launch):
            console.print(f"  cannot start on this machine: {problem}", markup=False, highlight=False, soft_wrap=True)
    # Per training stage: the estimated peak memory per process, and whether it fits (podium.training.memory).
    for line in plan_memory_lines(plan.stages):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_notes(plan: RunPlan, console=None) -> None:
    """Each stage's plan notes (`StageConfig.plan_notes`), e.g. a self-play stage's expected standard error."""
    console = console or Console()
    for s in plan.stages:
        for line in s.config.plan_notes():
            console.print(f"[{s.name}] {line}", markup=False, highlight=False, soft_wrap=True)


def print_report(report: dict) -> None:
    table = Table(title=f"{report['run_dir']}: report.md, report.json")
    for col in ("stage", "kind", "status", "seconds", "headline metrics"):
        table.add_column(col)
    for s in report["stages"]:
        table.add_row(s["name"], s["kind"], s["status"], f"{s['seconds']:.1f}", headline(s["metrics"]))
    Console().print(table)


def print_seed_plans(seed_plans: SeedPlans, console=None) -> None:
    """One row per stage, one column per seed: its status (reuse: copied from the seed named) and key."""
    console = console or Console()
    plans = seed_plans.plans
    first = next(iter(plans.values()))
    table = Table(title=f"{first.recipe.name or first.path} -> {seed_plans.run_dir}/seed-N")
    for col in ("#", "stage", "kind", *(f"seed {s}" for s in plans)):
        table.add_column(col)
    for i, s in enumerate(first.stages):
        cells = []
        for plan in plans.values():
            ps = plan.stages[i]
            shared = f" <- {ps.shared_from.parent.name}" if ps.status == "reuse" and ps.shared_from else ""
            cells.append(f"{ps.status}{shared} {ps.key[:8]}")
        table.add_row(str(i + 1), s.name, s.kind, *cells)
    console.print(table)


def print_seeds_result(result: SeedsResult) -> None:
    for report in result.reports.values():
        print_report(report)
    if result.compare:
        log.info(f"compare: {result.compare.get('markdown')}")
        print((result.run_dir / "compare.md").read_text())
    for seed, error in result.failed.items():
        log.error(f"seed {seed} failed: {error}")


def run_with_seeds(args, seeds: list[int], run_dir) -> int:
    seed_plans = make_seed_plans(args.recipe, seeds, args.overrides, run_dir, until=args.until)
    print_seed_plans(seed_plans)
    print_notes(next(iter(seed_plans.plans.values())))
    for plan in seed_plans.plans.values():
        print_launches(plan, show_progress=not args.no_progress)
    check_seed_plans(seed_plans)
    if any(machine_rank(plan.stages) > 0 for plan in seed_plans.plans.values()):
        raise PodiumError("--seeds runs on one machine: a multi-node run (launch.machine_rank > 0) takes one seed at "
                          "a time (run each seed with `seed=N --output DIR/seed-N` on every machine)")
    if args.dry_run:
        return 0
    result = run_seeds(seed_plans, show_progress=not args.no_progress)
    print_seeds_result(result)
    if result.failed:
        raise PodiumError(f"seed(s) {', '.join(map(str, result.failed))} failed; the others are in {run_dir} "
                          "(run the same command again: finished stages are kept)")
    return 0


def quiet_libraries() -> None:
    """No progress bars from transformers and huggingface_hub either (loading weights, downloads), in this
    process and in the stages it launches."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub / transformers are imported
    if (hf_logging := sys.modules.get("transformers.utils.logging")) is not None:  # already imported
        hf_logging.disable_progress_bar()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="podium run", description="Run a recipe (a YAML list of stages).")
    p.add_argument("recipe")
    p.add_argument("--output", "-o", help="run directory (default: the recipe's output_dir or runs/<name>)")
    p.add_argument("--seeds", help="run once per seed into OUTPUT/seed-N and compare them, e.g. 0,1,2 or 0-4 "
                   "(default: the recipe's `seeds:`)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, inputs, cached) and run nothing")
    p.add_argument("--until", metavar="STAGE", help="run the stages up to and including STAGE, and stop there")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. sft.max_steps=10")
    args = p.parse_intermixed_args(argv)
    if args.no_progress:
        quiet_libraries()
    plan = make_plan(args.recipe, args.overrides, args.output, until=args.until)
    seeds = parse_seeds(args.seeds) if args.seeds else plan.recipe.seeds
    if seeds:
        return run_with_seeds(args, seeds, plan.run_dir)
    print_plan(plan)
    print_notes(plan)
    print_launches(plan, show_progress=not args.no_progress)
    if args.dry_run:
        check_plan(plan)  # what would stop the run (run_plan checks it too)
        return 0
    if machine_rank(plan.stages) > 0:  # a multi-node run, seen from another machine than 0
        check_environment([s.launch for s in plan.stages if s.launch is not None and s.status != "cached"])
        follow_plan(plan, show_progress=not args.no_progress)
        return 0
    report = run_plan(plan, show_progress=not args.no_progress)
    log.info(f"report: {write_report(plan.run_dir)}")
    print_report(report)
    return 0
