"""`podium run RECIPE.yaml [--output DIR] [--dry-run] [--until STAGE] [key=value ...]`."""

from __future__ import annotations

import argparse
import logging

from rich.console import Console
from rich.table import Table

from podium.cards.report import fmt, write_report
from podium.distributed.follow import follow_plan, machine_rank
from podium.distributed.launcher import format_command, launch_command
from podium.distributed.spec import check_environment, environment_problems
from podium.pipeline import RunPlan, make_plan, run_plan

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


def print_report(report: dict) -> None:
    table = Table(title=f"{report['run_dir']}: report.md, report.json")
    for col in ("stage", "kind", "status", "seconds", "headline metrics"):
        table.add_column(col)
    for s in report["stages"]:
        table.add_row(s["name"], s["kind"], s["status"], f"{s['seconds']:.1f}", headline(s["metrics"]))
    Console().print(table)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="podium run", description="Run a recipe (a YAML list of stages).")
    p.add_argument("recipe")
    p.add_argument("--output", "-o", help="run directory (default: the recipe's output_dir or runs/<name>)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, inputs, cached) and run nothing")
    p.add_argument("--until", metavar="STAGE", help="run the stages up to and including STAGE, and stop there")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. sft.max_steps=10")
    args = p.parse_intermixed_args(argv)
    plan = make_plan(args.recipe, args.overrides, args.output, until=args.until)
    print_plan(plan)
    print_launches(plan, show_progress=not args.no_progress)
    if args.dry_run:
        return 0
    if machine_rank(plan.stages) > 0:  # a multi-node run, seen from another machine than 0
        check_environment([s.launch for s in plan.stages if s.launch is not None and s.status != "cached"])
        follow_plan(plan, show_progress=not args.no_progress)
        return 0
    report = run_plan(plan, show_progress=not args.no_progress)
    log.info(f"report: {write_report(plan.run_dir)}")
    print_report(report)
    return 0
