"""The run directory's layout: what the pipeline writes, and what cards, reports and tests read.

    RUN_DIR/
      report.json          the run's record: {"recipe", "name", "run_dir", "stages": [StageEntry...]},
                           rewritten after every stage (so an interrupted run has one too)
      report.md, report/   rendered from the run dir by podium.cards.report (plots under report/)
      <stage>/
        stage.json         StageRecord {"name", "kind", "key", "deps", "config"}, written before the stage runs
        metrics.json       the metrics the stage returned
        .podium-done       {"key", "seconds", "metrics"}: the completion marker, written last
        metrics.jsonl      per-step training metrics, one JSON object a line (podium.training.loop)
        ...                the stage's own artifacts (a model stage saves its model here)

Metric values are numbers; rates and accuracies are fractions in [0, 1] (`win_rate` 0.57, not 57):
percent is a display choice of cards and reports. Every file is written atomically
(podium.data.records), so a reader sees a whole file or none.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from podium.data.records import write_json

STAGE_FILE = "stage.json"
METRICS_FILE = "metrics.json"
DONE_FILE = ".podium-done"
STEP_METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "report"


@dataclass
class StageRecord:
    """<stage>/stage.json: the stage's resolved config and its content key (what decides skip and resume)."""

    name: str
    kind: str
    key: str
    deps: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)


@dataclass
class StageEntry:
    """One stage in report.json. status: "ran" or "cached"; seconds: wall time of the run that made it."""

    name: str
    kind: str
    status: str
    seconds: float
    metrics: dict = field(default_factory=dict)


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON object from `path`; {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_stage_record(folder: str | os.PathLike, record: StageRecord) -> Path:
    return write_json(Path(folder) / STAGE_FILE, asdict(record))


def read_stage_record(folder: str | os.PathLike) -> StageRecord | None:
    """The stage.json in `folder`, or None when there is none (not a stage folder podium wrote)."""
    data = read_json_object(Path(folder) / STAGE_FILE)
    if not isinstance(data.get("config"), dict) or "kind" not in data:
        return None
    return StageRecord(name=str(data.get("name") or Path(folder).name), kind=str(data["kind"]),
                       key=str(data.get("key") or ""), deps=list(data.get("deps") or []), config=data["config"])


def write_stage_done(folder: str | os.PathLike, key: str, seconds: float, metrics: dict) -> None:
    """metrics.json, then the completion marker: its presence means every artifact of the stage is complete."""
    folder = Path(folder)
    write_json(folder / METRICS_FILE, metrics)
    write_json(folder / DONE_FILE, {"key": key, "seconds": seconds, "metrics": metrics})


def read_done(folder: str | os.PathLike) -> dict | None:
    """The completion marker {"key", "seconds", "metrics"}, or None when the stage did not finish."""
    path = Path(folder) / DONE_FILE
    return read_json_object(path) if path.exists() else None


def write_run_report(run_dir: str | os.PathLike, recipe: str, name: str | None, stages: list[StageEntry]) -> dict:
    """Write report.json; returns its content."""
    report = {"recipe": recipe, "name": name, "run_dir": str(run_dir), "stages": [asdict(s) for s in stages]}
    write_json(Path(run_dir) / REPORT_FILE, report)
    return report


def read_run_report(run_dir: str | os.PathLike) -> dict:
    """report.json of `run_dir` ({} when there is none yet)."""
    return read_json_object(Path(run_dir) / REPORT_FILE)


def read_step_metrics(folder: str | os.PathLike) -> list[dict]:
    """Rows of <stage>/metrics.jsonl; blank or broken lines (a run killed mid-write) are skipped."""
    try:
        lines = (Path(folder) / STEP_METRICS_FILE).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
