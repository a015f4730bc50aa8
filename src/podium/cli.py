"""The `podium` command: subcommand -> stage function. No logic lives here."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from podium.errors import PodiumError

# Subcommands with their own argument parsing: name -> "module:function(argv) -> int".
CUSTOM = {
    "merge": "podium.merging.cli:main",
    "eval": "podium.evaluation.stage:eval_command",
    "leaderboard": "podium.evaluation.leaderboard:main",
    "winrate": "podium.evaluation.winrate:main",
    "card": "podium.cards.cli:main",
    "report": "podium.cards.report:main",
}
HELP = {
    "run": "run a recipe: podium run RECIPE.yaml [--output DIR] [--dry-run] [key=value ...]",
    "stage": "run one stage kind alone: podium stage KIND CONFIG.yaml [--output DIR] [key=value ...]",
    "merge": "merge models from a mergekit YAML: podium merge CONFIG.yml OUTPUT_DIR",
    "eval": "podium eval --model DIR --tasks NAMES [--include-path DIR] | eval preference --model DIR --data F",
    "leaderboard": "Open LLM Leaderboard scores: podium leaderboard RESULTS.json --version v1|v2",
    "winrate": "raw and length-controlled win rate of a model against a baseline",
    "card": "write the model card (and run report) of a run: podium card RUN_DIR",
    "report": "write the run report with plots: podium report RUN_DIR",
}


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(show_path=False, markup=False)], force=True)
    for noisy in ("httpx", "urllib3", "datasets", "transformers", "accelerate", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_run(argv: list[str]) -> int:
    from podium.pipeline import make_plan, print_plan, run_plan

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
    if args.dry_run:
        return 0
    report = run_plan(plan, show_progress=not args.no_progress)
    print_report(report)
    return 0


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['run_dir']}: report.md, report.json")
    for col in ("stage", "kind", "status", "seconds", "headline metrics"):
        table.add_column(col)
    for s in report["stages"]:
        table.add_row(s["name"], s["kind"], s["status"], f"{s['seconds']:.1f}", headline(s["metrics"]))
    Console().print(table)


# What a practitioner looks at first, in this order; the full set is in report.json and report.md.
HEADLINE_KEYS = ("accuracy", "win_rate", "baseline_accuracy", "train_loss", "loss", "rewards/margins",
                 "rewards/accuracies", "pairs", "steps", "parameters", "num_layers")


def headline(metrics: dict, limit: int = 4) -> str:
    """A short summary of a stage's metrics for the terminal: the headline keys present, at most `limit`."""
    from podium.cards.report import fmt

    shown = [k for k in HEADLINE_KEYS if isinstance(metrics.get(k), (int, float))][:limit]
    rest = sum(isinstance(v, (int, float)) for v in metrics.values()) - len(shown)
    if not shown:
        return f"{rest} metrics" if rest else ""
    return ", ".join(f"{k}={fmt(metrics[k])}" for k in shown) + (f" (+{rest} more)" if rest else "")


def cmd_stage(kind: str | None, argv: list[str]) -> int:
    from podium.config import load_stage_config
    from podium.stages import get_stage, run_stage

    p = argparse.ArgumentParser(prog=f"podium {kind or 'stage KIND'}",
                                description=f"Run stage kind {kind or 'KIND'} alone from a YAML config.")
    if kind is None:
        p.add_argument("kind")
    p.add_argument("config", help="YAML with the stage's settings (and output_dir)")
    p.add_argument("--output", "-o", help="output folder (overrides the config's output_dir)")
    p.add_argument("overrides", nargs="*", help="key=value")
    args = p.parse_intermixed_args(argv)
    kind = kind or args.kind
    spec = get_stage(kind)
    cfg, output_dir = load_stage_config(spec.config, args.config, args.overrides, what=kind)
    out = args.output or output_dir
    if not out:
        raise PodiumError(f"{args.config}: set output_dir in the config or pass --output DIR")
    metrics = run_stage(kind, cfg, out)
    import json

    print(json.dumps(metrics, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    from podium.stages import STAGES, load_all_stages

    argv = list(sys.argv[1:] if argv is None else argv)
    load_all_stages()
    commands = sorted(set(STAGES) | set(CUSTOM) | {"run", "stage"})
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: podium COMMAND [...]\n\ncommands:")
        for c in commands:
            doc = HELP.get(c) or (STAGES[c].doc.splitlines()[0] if c in STAGES and STAGES[c].doc else "")
            print(f"  {c:<14} {doc}")
        return 0
    if argv[0] == "--version":
        from podium import __version__

        print(__version__)
        return 0
    setup_logging(verbose="-v" in argv)
    argv = [a for a in argv if a != "-v"]
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "run":
            return cmd_run(rest)
        if cmd == "stage":
            return cmd_stage(None, rest)
        if cmd in CUSTOM:
            module, fn = CUSTOM[cmd].split(":")
            try:
                entry = getattr(importlib.import_module(module), fn)
            except ModuleNotFoundError:
                entry = None
            if entry is not None:
                return entry(rest) or 0
        if cmd in STAGES:
            return cmd_stage(cmd, rest)
        print(f"podium: unknown command {cmd!r}; commands: {', '.join(commands)}", file=sys.stderr)
        return 2
    except PodiumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
