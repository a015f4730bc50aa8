"""`podium COMMAND ...`: pick the command module (or run a stage kind alone) and turn errors into messages.

A user mistake (`PodiumError`) prints one line and exits 2; a missing optional dependency names the
package and the extra that installs it, never "unknown command".
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from rich.logging import RichHandler

from podium import __version__
from podium.cli.stage import stage_command
from podium.errors import PodiumError
from podium.stages import STAGES, load_all_stages

# command -> (module with `main(argv) -> int`, one line of help). Any other stage kind runs alone
# through podium.cli.stage (`podium sft CONFIG.yaml`).
COMMANDS = {
    "run": ("podium.cli.run", "run a recipe: podium run RECIPE.yaml [--output DIR] [--seeds 0,1,2] [--dry-run] "
            "[key=value ...]"),
    "preview": ("podium.cli.preview", "what training sees: podium preview RECIPE.yaml STAGE [--rows N] [--json] "
                "[--model DIR]"),
    "compare": ("podium.cli.compare", "means and 95 % CIs across seeds: podium compare RUN_DIR... [--output DIR]"),
    "stage": ("podium.cli.stage", "run one stage kind alone: podium stage KIND CONFIG.yaml [--output DIR] [key=value ...]"),
    "merge": ("podium.cli.merge", "merge models from a mergekit YAML: podium merge CONFIG.yml OUTPUT_DIR"),
    "eval": ("podium.cli.eval",
             "podium eval --model DIR --tasks NAMES [--include-path DIR] | eval preference --model DIR --data F"),
    "leaderboard": ("podium.cli.leaderboard", "Open LLM Leaderboard scores: podium leaderboard RESULTS.json --version v1|v2"),
    "winrate": ("podium.cli.winrate", "raw and length-controlled win rate of a model against a baseline"),
    "judge": ("podium.cli.judge", "score candidate sets: podium judge --judge pairrm|gpm|reward|verifier [--model DIR] "
              "--data CANDIDATES.jsonl --output OUT.jsonl"),
    "card": ("podium.cli.card", "write the model card (and run report) of a run: podium card RUN_DIR"),
    "report": ("podium.cli.report", "write the run report with plots: podium report RUN_DIR"),
}

# Optional dependencies: import name -> (pip package, podium extra that installs it).
EXTRAS = {
    "lm_eval": ("lm-eval", "eval"),
    "vllm": ("vllm", "gpu"),
    "deepspeed": ("deepspeed", "gpu"),
}


# What is true after Ctrl-C, per command: only a recipe's stages, training checkpoints and finished self-play
# iterations are kept; everything else starts over when the command is run again.
INTERRUPTED = {
    "run": "interrupted; run the same command again to continue: finished stages are kept, a training stage "
           "resumes from its last checkpoint (save_steps), self-play from its last finished iteration, and any "
           "other interrupted stage starts over",
    "sft": "interrupted; run the same command again to continue from the last checkpoint (written every "
           "save_steps; without one, training starts over)",
    "selfplay": "interrupted; run the same command again to continue after the last finished iteration (the "
                "interrupted iteration's training resumes from its last checkpoint, if save_steps wrote one)",
    "merge": "interrupted; a merge does not resume: run the same command again to start it over",
}
INTERRUPTED["train"] = INTERRUPTED["sft"]
INTERRUPTED_DEFAULT = "interrupted; nothing resumes: run the same command again to start over"


def interrupted_message(cmd: str, argv: list[str]) -> str:
    """The Ctrl-C message of `podium CMD ARGV`: what running it again will do."""
    if cmd == "stage" and argv:  # podium stage KIND CONFIG
        cmd = argv[0]
    return INTERRUPTED.get(cmd, INTERRUPTED_DEFAULT)


def missing_dependency(command: str, e: ModuleNotFoundError) -> str | None:
    """The message for a third-party module that is not installed; None for podium's own modules."""
    name = (e.name or "").split(".")[0]
    if not name or name == "podium":
        return None
    package, extra = EXTRAS.get(name, (name, None))
    install = f"pip install 'podium[{extra}]'" if extra else f"pip install {package} (a dependency of podium)"
    return f"podium {command} needs the package {package!r}, which is not installed: {install}"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(show_path=False, markup=False)], force=True)
    for noisy in ("httpx", "urllib3", "datasets", "transformers", "accelerate", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def print_help(stages: dict) -> None:
    print("usage: podium COMMAND [...]\n\ncommands:")
    for c in sorted(set(stages) | set(COMMANDS)):
        doc = COMMANDS[c][1] if c in COMMANDS else (stages[c].doc.splitlines()[0] if stages[c].doc else "")
        print(f"  {c:<14} {doc}")


def run_command(cmd: str, argv: list[str]) -> int:
    if cmd in COMMANDS:
        # Each command's module is imported only when it runs: `podium winrate` needs no lm-eval, and a
        # missing optional package stops only the command that needs it (named in main's message).
        # Stage modules load only for commands that use the registry (`podium merge` starts in < 1 s).
        return importlib.import_module(COMMANDS[cmd][0]).main(argv) or 0
    load_all_stages()
    if cmd in STAGES:
        return stage_command(cmd, argv)
    commands = ", ".join(sorted(set(STAGES) | set(COMMANDS)))
    print(f"podium: unknown command {cmd!r}; commands: {commands}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        print(__version__)
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        load_all_stages()
        print_help(STAGES)
        return 0
    setup_logging(verbose="-v" in argv)
    argv = [a for a in argv if a != "-v"]
    if not argv:  # `podium -v` alone
        load_all_stages()
        print_help(STAGES)
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        return run_command(cmd, rest)
    except PodiumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        message = missing_dependency(cmd, e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(cmd, rest), file=sys.stderr)
        return 130
