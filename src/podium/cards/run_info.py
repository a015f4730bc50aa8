"""Read a finished (or partial) run dir (layout: podium.rundir): report.json, each stage's stage.json,
metrics.json and metrics.jsonl.

Every piece is optional: a missing or unreadable file yields an empty value, so cards and reports
can be written for interrupted runs; a stage folder without stage.json takes its settings from the
recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from podium.errors import PodiumError
from podium.rundir import METRICS_FILE, read_json_object, read_run_report, read_stage_record, read_step_metrics


@dataclass
class StageInfo:
    """One stage of a run as the card and report see it."""

    name: str
    kind: str = ""
    status: str = ""
    seconds: float | None = None
    metrics: dict = field(default_factory=dict)  # what the stage returned (report.json)
    config: dict = field(default_factory=dict)  # resolved config (<stage>/stage.json, its "config")
    steps: list[dict] = field(default_factory=list)  # per-step training metrics (<stage>/metrics.jsonl)
    folder: Path | None = None


@dataclass
class RunInfo:
    run_dir: Path
    recipe: Path | None = None
    stages: list[StageInfo] = field(default_factory=list)

    def by_kind(self, *kinds: str) -> list[StageInfo]:
        return [s for s in self.stages if s.kind in kinds]


def recipe_stages(recipe: Path | None) -> dict[str, dict]:
    """{stage name: settings as written in the recipe} (unresolved `@stage` references kept)."""
    if recipe is None:
        return {}
    try:
        data = yaml.safe_load(recipe.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    stages = data.get("stages") if isinstance(data, dict) else None
    return {str(st["name"]): st for st in stages or [] if isinstance(st, dict) and "name" in st}


def find_recipe(run_dir: Path, recipe: str | None) -> Path | None:
    candidates = []
    if recipe:
        candidates += [Path(recipe), run_dir / recipe, run_dir / Path(recipe).name]
    candidates += [run_dir / "recipe.yaml", run_dir / "recipe.yml"]
    return next((p for p in candidates if p.is_file()), None)


def load_run(run_dir: str | Path) -> RunInfo:
    """The run's stages in report order; stage folders without a report entry are appended."""
    root = Path(run_dir)
    if not root.is_dir():
        raise PodiumError(f"{root}: not a run directory")
    report = read_run_report(root)
    run = RunInfo(run_dir=root, recipe=find_recipe(root, report.get("recipe")))
    seen = set()
    for entry in report.get("stages") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        name = str(entry["name"])
        seen.add(name)
        run.stages.append(StageInfo(
            name=name, kind=str(entry.get("kind") or ""), status=str(entry.get("status") or ""),
            seconds=entry.get("seconds"), metrics=dict(entry.get("metrics") or {}),
        ))
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and read_stage_record(p) is not None):
        if folder.name not in seen:
            run.stages.append(StageInfo(name=folder.name))
    from_recipe = recipe_stages(run.recipe)
    for s in run.stages:
        s.folder = root / s.name
        record = read_stage_record(s.folder)
        if record is not None:
            s.config, kind = record.config, record.kind
        elif s.name in from_recipe:
            s.config = {k: v for k, v in from_recipe[s.name].items() if k not in ("name", "kind")}
            kind = str(from_recipe[s.name].get("kind") or "")
        else:
            kind = ""
        s.steps = read_step_metrics(s.folder)
        s.kind = s.kind or kind
        # A stage that finished but is not in report.json yet still has its metrics.json.
        s.metrics = s.metrics or read_json_object(s.folder / METRICS_FILE)
    return run
