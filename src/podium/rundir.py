"""The run directory's layout: what the pipeline writes, and what cards, reports and tests read.

    RUN_DIR/
      report.json          the run's record: {"recipe", "name", "run_dir", "seed", "stages": [StageEntry...]},
                           rewritten after every stage (so an interrupted run has one too)
      report.md, report/   rendered from the run dir by podium.cards.report (plots under report/)
      .podium-lock         who is running in this dir (podium.run_lock); one podium process per run dir
      <stage>/
        stage.json         StageRecord {"name", "kind", "key", "deps", "config"}, written before the stage runs
        metrics.json       the metrics the stage returned
        .podium-done       {"key", "seconds", "metrics", "files"}: the completion marker, written last; "files" is
                           the manifest {path: [size, sha256]} of everything the stage wrote, checked before
                           the stage is reused (podium.fingerprint)
        metrics.jsonl      per-step training metrics, one JSON object a line (podium.training.loop)
        ...                the stage's own artifacts (a model stage saves its model here)

A multi-seed run (`podium run RECIPE --seeds 0,1,2`, podium.multiseed) is a folder of run dirs:

    DIR/
      seed-0/, seed-1/, ...  one complete run dir per seed (a card or report can be written from each)
      compare.json, compare.md, compare_*.png   statistics across seeds (podium.cards.compare)

Podium deletes only what it wrote: a stage folder is removed (its stage's config changed) only when
its own stage.json (or completion marker) says podium made it and it is not a symbolic link, and a
directory that is not a run dir is never written into where a file of the run layout already exists.

Metric values are numbers; rates and accuracies are fractions in [0, 1] (`win_rate` 0.57, not 57):
percent is a display choice of cards and reports. Every file is written atomically
(podium.files), so a reader sees a whole file or none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from podium.errors import PodiumError
from podium.files import write_json
from podium.fingerprint import manifest, manifest_problem

STAGE_FILE = "stage.json"
METRICS_FILE = "metrics.json"
DONE_FILE = ".podium-done"
STEP_METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "report"
# What the pipeline writes at the top of a run dir (besides the stage folders).
RUN_FILES = (REPORT_FILE, REPORT_MD, PLOTS_DIR)
# What `podium run --seeds` writes at the top of a multi-seed dir (besides the seed-N run dirs).
COMPARE_FILES = ("compare.json", "compare.md")
SEED_DIR = re.compile(r"^seed-(\d+)$")


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
    """metrics.json, then the completion marker: its presence means every artifact of the stage is complete.

    The marker holds the manifest of the folder (each file's size and SHA-256, stage.json aside: a reused
    copy rewrites it), so a file changed, truncated or removed afterwards is found before the stage is reused."""
    folder = Path(folder)
    write_json(folder / METRICS_FILE, metrics)
    files = manifest(folder, exclude=(STAGE_FILE, DONE_FILE))
    write_json(folder / DONE_FILE, {"key": key, "seconds": seconds, "metrics": metrics, "files": files})


def stage_output_problem(folder: str | os.PathLike) -> str | None:
    """How a finished stage's folder differs from what it wrote (its manifest), or None when it is intact.

    A marker written before manifests existed cannot be checked and passes."""
    done = read_done(folder) or {}
    files = done.get("files")
    if files is None:
        return None
    if not isinstance(files, dict):
        return "its completion marker's manifest is damaged"
    return manifest_problem(folder, files)


def read_done(folder: str | os.PathLike) -> dict | None:
    """The completion marker {"key", "seconds", "metrics"}, or None when the stage did not finish."""
    path = Path(folder) / DONE_FILE
    return read_json_object(path) if path.exists() else None


def write_run_report(run_dir: str | os.PathLike, recipe: str, name: str | None, stages: list[StageEntry],
                     seed: int | None = None) -> dict:
    """Write report.json (`seed`: the recipe seed the run used); returns its content."""
    report = {"recipe": recipe, "name": name, "run_dir": str(run_dir), "seed": seed,
              "stages": [asdict(s) for s in stages]}
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


def seed_dir_name(seed: int) -> str:
    """The folder of one seed's run dir inside a multi-seed dir."""
    return f"seed-{seed}"


def made_by_podium(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a stage folder podium wrote: it holds podium's stage.json (or, from runs
    written before stage.json existed, the completion marker), neither of them a link."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    stage, done = folder / STAGE_FILE, folder / DONE_FILE
    if not stage.is_symlink() and read_stage_record(folder) is not None:
        return True
    return done.is_file() and not done.is_symlink() and read_done(folder) is not None


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a podium run dir: its report.json lists stages, or a stage folder in it is podium's."""
    p = Path(path)
    if not p.is_dir():
        return False
    if isinstance(read_run_report(p).get("stages"), list):
        return True
    return any(made_by_podium(c) for c in p.iterdir() if c.is_dir() and not c.is_symlink())


def seed_run_dirs(path: str | os.PathLike) -> list[Path]:
    """The seed-N run dirs of a multi-seed dir, by seed ([] when `path` is not one)."""
    p = Path(path)
    if not p.is_dir():
        return []
    found = [c for c in p.iterdir() if SEED_DIR.match(c.name) and not c.is_symlink() and is_run_dir(c)]
    return sorted(found, key=lambda c: int(SEED_DIR.match(c.name).group(1)))


def require_run_dir(path: str | os.PathLike, action: str) -> Path:
    """`path` when it is a podium run dir; otherwise a PodiumError saying so (`action`: what would have been written)."""
    p = Path(path)
    if is_run_dir(p):
        return p
    if not p.exists():
        raise PodiumError(f"{p}: no such directory")
    if seed_run_dirs(p):
        raise PodiumError(f"{p} holds one run dir per seed, not a run: {action} for one of them "
                          f"({seed_run_dirs(p)[0]}), or compare them with `podium compare {p}`")
    raise PodiumError(f"{p} is not a podium run dir (no report.json, no stage folder with stage.json); "
                      f"podium will not {action} there")


def stage_dir_problem(folder: str | os.PathLike) -> str | None:
    """Why podium may not write into (or delete) stage folder `folder`, or None when it may.

    It may when the folder does not exist yet, or is a real directory (not a link) that podium made.
    """
    folder = Path(folder)
    if folder.is_symlink():
        return (f"{folder} is a symbolic link (to {os.readlink(folder)}); podium does not write or delete "
                "through links in a run dir: remove the link")
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder} is a file, not a stage folder podium wrote: move it away or choose another --output"
    if not made_by_podium(folder):
        return (f"{folder} exists and podium did not write it (no {STAGE_FILE}); podium will not delete it: "
                "move it away or choose another --output")
    return None


def run_dir_problem(run_dir: str | os.PathLike) -> str | None:
    """Why `run_dir` may not be the output of a run, or None: a directory that is not a run dir may be
    used only when none of the files podium writes at its top (RUN_FILES) already exist there."""
    p = Path(run_dir)
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a directory"
    if not p.exists() or is_run_dir(p):
        return None
    if seed_run_dirs(p):
        return f"{p} holds one run dir per seed (seed-N); run into it with --seeds, or choose another --output"
    return files_problem(p, RUN_FILES)


def files_problem(p: Path, own: tuple[str, ...]) -> str | None:
    """Why podium may not write its files `own` at the top of `p`, a directory it did not make: some exist."""
    taken = [name for name in own if os.path.lexists(p / name)]
    if taken:
        return (f"{p} is not a podium run dir but already holds {', '.join(taken)}; podium will not overwrite "
                "them: choose another --output")
    return None


def remove_stage_dir(folder: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """Delete the stage folder `folder` of `run_dir` (stale output of another config), only if podium made it.

    Raises PodiumError (and deletes nothing) for a link, a file, a folder without podium's stage.json,
    or a folder that is not directly inside the run dir. `shutil.rmtree` does not follow links inside.
    """
    folder = Path(folder)
    problem = stage_dir_problem(folder)
    if problem is not None:
        raise PodiumError(problem)
    if not folder.exists():
        return
    if folder.resolve().parent != Path(run_dir).resolve():
        raise PodiumError(f"{folder} is not a stage folder of {run_dir}; podium will not delete it")
    shutil.rmtree(folder)


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the filesystem allows one (a shared model costs no space), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_stage_dir(source: str | os.PathLike, target: str | os.PathLike, key: str, record: StageRecord) -> bool:
    """Put a copy of the finished stage folder `source` (completion marker holding `key`) at `target`.

    Files are hard-linked where possible: podium never rewrites a finished stage's files in place (every
    write is a new file renamed over the old one), so the two folders cannot change each other. The copy
    is built beside `target` and renamed into place, and its stage.json is `record` (this run's config).
    Returns False, copying nothing, when `source` is not such a folder, holds a symbolic link or no longer
    matches its manifest.
    """
    source, target = Path(source), Path(target)
    done = read_done(source) if made_by_podium(source) else None
    if done is None or done.get("key") != key or stage_output_problem(source) is not None:
        return False
    for root, dirs, files in os.walk(source):
        if any(Path(root, n).is_symlink() for n in dirs + files):
            return False
    tmp = target.with_name(f".{target.name}.copy-{os.getpid()}")
    for stale in target.parent.glob(f".{target.name}.copy-*"):  # left by a killed run (the caller holds the lock)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
    shutil.copytree(source, tmp, copy_function=_link_or_copy)
    (tmp / STAGE_FILE).unlink()  # a link to the source's file: replaced, not written through
    write_stage_record(tmp, record)
    os.rename(tmp, target)
    return True
