"""Stage registry: every pipeline stage kind is a typed config plus a function.

A stage kind is declared once and then runs three ways: inside a recipe
(`podium run`), alone from the CLI (`podium <command> CONFIG.yaml`), and from
Python (`run_stage("sft", {...}, "out/sft")`).

    class SFTConfig(StageConfig):
        model: str
        learning_rate: float = 1e-3

    @stage("sft", SFTConfig, outputs={"model": "."})
    def sft(cfg: SFTConfig, ctx: StageContext) -> dict[str, float]:
        ...  # write artifacts under ctx.out_dir, return metrics for report.json

`outputs` maps output names to paths relative to the stage folder; the first is the
primary output. In a recipe, the string `"@sft"` resolves to the primary output of
stage `sft` and `"@sft.model"` to a named one, before the config is validated.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict

from podium.config import NumberRules
from podium.errors import ConfigError


class StageConfig(NumberRules):
    """Base of every stage's settings: typed, unknown keys are errors, numbers are finite numbers (not booleans)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def plan_notes(self) -> list[str]:
        """Lines `podium run --dry-run` prints under the plan for this stage (e.g. what its settings can measure)."""
        return []


@dataclass
class StageContext:
    """What a running stage may know about the run around it."""

    name: str
    out_dir: Path
    run_dir: Path | None = None
    kind: str = ""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("podium"))
    # Set by the pipeline so a stage can show a progress bar in the run's console.
    show_progress: bool = True


@dataclass(frozen=True)
class StageSpec:
    kind: str
    config: type[StageConfig]
    fn: Callable[[Any, StageContext], dict | None]
    outputs: dict[str, str]
    doc: str = ""
    # Whether the kind can run on several processes (a recipe's `launch:`, podium.distributed), and how:
    # "data" splits work by item and writes what one process writes (generation); "train" runs the
    # training loop on every rank, so the global batch counts the processes. None: in-process only.
    distributed: str | None = None


STAGES: dict[str, StageSpec] = {}


def stage(kind: str, config: type[StageConfig], outputs: dict[str, str] | None = None, distributed: str | None = None):
    """Register `fn(cfg, ctx) -> metrics` as stage kind `kind` (`distributed`: see StageSpec)."""
    if distributed not in (None, "data", "train"):
        raise ValueError(f"distributed must be None, 'data' or 'train', got {distributed!r}")

    def register(fn):
        for name, rel in (outputs or {}).items():
            # "@stage.output" resolves to the stage folder / rel: it must stay inside the stage folder.
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise RuntimeError(f"stage kind {kind!r}: output {name!r} = {rel!r} leaves the stage folder")
        if kind in STAGES and STAGES[kind].fn is not fn:
            raise RuntimeError(f"stage kind {kind!r} registered twice")
        STAGES[kind] = StageSpec(kind, config, fn, dict(outputs or {"output": "."}), (fn.__doc__ or "").strip(),
                                 distributed)
        return fn

    return register


def get_stage(kind: str) -> StageSpec:
    load_all_stages()
    if kind not in STAGES:
        known = ", ".join(sorted(STAGES))
        raise ConfigError(f"unknown stage kind {kind!r}; known kinds: {known}")
    return STAGES[kind]


# Modules that register stage kinds; imported lazily so `import podium` stays light.
STAGE_MODULES = [
    "podium.models.build",
    "podium.tasks.stage",
    "podium.training.sft",
    "podium.training.train",
    "podium.evaluation.stage",
    "podium.generation.stage",
    "podium.selfplay.sgd",
    "podium.pairs.stage",
    "podium.selfplay.sppo",
    "podium.merging.stage",
    "podium.cards.stage",
]


def load_all_stages() -> None:
    for mod in STAGE_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            # A module not written yet is skipped; a missing dependency inside one is not.
            if e.name != mod:
                raise


def run_stage(kind: str, config: dict | StageConfig, out_dir: str | Path, name: str | None = None) -> dict:
    """Run one stage alone (from Python or the CLI), outside any recipe.

    A stage run from inside another (selfplay's `generate` and `train`) shows progress bars only when
    the outer one does (`--no-progress` holds for the whole run).
    """
    spec = get_stage(kind)
    cfg = config if isinstance(config, StageConfig) else spec.config.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(name=name or kind, out_dir=out, kind=kind, show_progress=_SHOW_PROGRESS.get())
    return call_stage(spec, cfg, ctx)


# Whether the stage running now shows progress bars; the stages it runs inherit it (run_stage).
_SHOW_PROGRESS: ContextVar[bool] = ContextVar("podium_show_progress", default=True)


def call_stage(spec: StageSpec, cfg: StageConfig, ctx: StageContext) -> dict:
    """`spec.fn(cfg, ctx)`, with the stages it runs inheriting `ctx.show_progress`."""
    token = _SHOW_PROGRESS.set(ctx.show_progress)
    try:
        return spec.fn(cfg, ctx) or {}
    finally:
        _SHOW_PROGRESS.reset(token)
