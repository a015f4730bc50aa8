"""Read a finished (or partial) run dir: report.json, each stage's config.json and metrics.jsonl.

Every piece is optional: a missing or unreadable file yields an empty value, so cards
and reports can be written for interrupted runs and for stages run alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from podium.errors import PodiumError


@dataclass
class StageInfo:
    """One stage of a run as the card and report see it."""

    name: str
    kind: str = ""
    status: str = ""
    seconds: float | None = None
    metrics: dict = field(default_factory=dict)  # what the stage returned (report.json)
    config: dict = field(default_factory=dict)  # resolved config (<stage>/config.json, its "config")
    steps: list[dict] = field(default_factory=list)  # per-step training metrics (<stage>/metrics.jsonl)
    folder: Path | None = None


@dataclass
class RunInfo:
    run_dir: Path
    recipe: Path | None = None
    stages: list[StageInfo] = field(default_factory=list)

    def by_kind(self, *kinds: str) -> list[StageInfo]:
        return [s for s in self.stages if s.kind in kinds]


def read_json_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics_jsonl(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl; blank or broken lines (a run killed mid-write) are skipped."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


# Where a stage's resolved config may be. The pipeline writes config.json, but a model stage
# saves the model into its own folder and the model's config.json replaces it; a later
# pipeline may move the stage config to one of the other names.
STAGE_CONFIG_FILES = ("stage.json", "stage_config.json", "config.json")


def is_model_config(data: dict) -> bool:
    return "model_type" in data or "architectures" in data


def stage_config(folder: Path) -> tuple[dict, str]:
    """(resolved settings, kind) of the stage in `folder`; ({}, "") when none can be found.

    The pipeline writes `{"name", "kind", "key", "deps", "config": {...settings}}`; a bare
    settings dict (a stage run by hand) is accepted too; a transformers model config is not.
    """
    for name in STAGE_CONFIG_FILES:
        data = read_json_file(folder / name)
        if not data or is_model_config(data):
            continue
        if isinstance(data.get("config"), dict) and ("deps" in data or "key" in data):
            return data["config"], str(data.get("kind") or "")
        return data, str(data.get("kind") or "")
    return {}, ""


def recipe_stages(recipe: Path | None) -> dict[str, dict]:
    """{stage name: settings as written in the recipe} (unresolved `@stage` references kept)."""
    if recipe is None:
        return {}
    import yaml

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
    report = read_json_file(root / "report.json")
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
    stage_dirs = (p for p in root.iterdir() if p.is_dir() and any((p / n).is_file() for n in STAGE_CONFIG_FILES))
    for folder in sorted(stage_dirs):
        if folder.name not in seen:
            run.stages.append(StageInfo(name=folder.name))
    from_recipe = recipe_stages(run.recipe)
    for s in run.stages:
        s.folder = root / s.name
        s.config, kind = stage_config(s.folder)
        if not s.config and s.name in from_recipe:
            s.config = {k: v for k, v in from_recipe[s.name].items() if k not in ("name", "kind")}
            kind = kind or str(from_recipe[s.name].get("kind") or "")
        s.steps = read_metrics_jsonl(s.folder / "metrics.jsonl")
        s.kind = s.kind or kind
        # A stage that finished but is not in report.json yet still has its metrics.json.
        s.metrics = s.metrics or read_json_file(s.folder / "metrics.json")
    return run
