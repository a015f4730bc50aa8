"""Dataset mixtures: per-source sample counts, seeded draws, several source kinds.

Rhea-72b's SFT set is "a 100k random draw from each of these sets, 1k from each of
those"; in a recipe:

    data:
      - {path: Open-Orca/SlimOrca, count: 100000}
      - {path: data/local.jsonl, count: 1000}
      - {task: arithmetic, count: 2000, difficulty: {max_digits: 2}}

A source is a local JSONL file, a folder saved with `datasets.save_to_disk`, a Hub
dataset id (loaded with `datasets`), or a built-in task family.
"""

from __future__ import annotations

import inspect
import random
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator

from podium.config import NumberRules, invalid, relocated
from podium.data.records import read_jsonl
from podium.errors import ConfigError, DataError
from podium.hub import hub_online, local_path_problem
from podium.refs import DataSpec
from podium.tasks import get_task
from podium.tasks.base import check_count


def task_problems(task: str | None, difficulty: dict, count: int | None = None) -> list[tuple[tuple, str]]:
    """(key path, message) for an unknown task, difficulty keys its item generator does not take or values it
    refuses, or a `count` of items over `podium.limits.SOURCE_ROWS`.

    `task` None is the default task. A typo such as `max_digit`, a value such as `max_digits: 1e9` and a
    `count: 1e12` are found here, when the config is validated (`--dry-run`), not when the items are drawn.
    """
    try:
        family = get_task(task)
    except ConfigError as e:
        return [(("task",), str(e))]
    params = inspect.signature(family.sample).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = [n for n in list(params)[1:]]  # after the random generator
        unknown = [(("difficulty", key), f"task {family.name!r} has no difficulty setting {key!r}; it takes "
                    f"{', '.join(accepted) or 'none'}") for key in difficulty if key not in accepted]
        if unknown:
            return unknown
    if count is not None:
        try:
            check_count(count, f"task {family.name}")
        except ConfigError as e:
            return [(("count",), str(e))]
    try:  # one draw: the generator checks its difficulty values (ranges, types) itself
        family.sample(random.Random(0), **difficulty)
    except ConfigError as e:
        return [(("difficulty",), str(e))]
    except (TypeError, ValueError, OverflowError) as e:
        return [(("difficulty",), f"task {family.name!r}: difficulty {difficulty!r} is not usable ({e})")]
    return []


class DataSource(NumberRules):
    """One source of a mixture: a dataset (`path`: JSONL, saved folder or Hub id) or a built-in `task`."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    task: str | None = None
    count: int | None = Field(None, ge=1, description="random draw of this many rows; all rows if unset")
    split: str = "train"
    name: str | None = Field(None, description="Hub dataset config name")
    columns: dict[str, str] | None = Field(None, description="rename fields, e.g. {prompt: instruction}")
    difficulty: dict[str, Any] = Field(default_factory=dict, description="task difficulty settings")
    seed: int | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.path is None) == (self.task is None):
            raise invalid((), "each data source needs exactly one of 'path' or 'task'", None)
        if self.task is not None:
            for loc, message in task_problems(self.task, self.difficulty, self.count):
                raise invalid(loc, message, self.task if loc == ("task",) else self.difficulty.get(loc[-1]))
        return self


def as_sources(data: str | Path | list | dict) -> list[DataSource]:
    """The sources of a mixture spec; a ConfigError (not a pydantic traceback) for one that is not valid."""
    items = [data] if isinstance(data, (str, Path, dict)) else data
    if not isinstance(items, list):
        raise ConfigError(f"data: a dataset path, a source mapping or a list of them, got {type(data).__name__}")
    sources = []
    for i, item in enumerate(items):
        try:
            sources.append(DataSource(path=str(item)) if isinstance(item, (str, Path))
                           else DataSource.model_validate(item))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'source'}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"data source {i}: {problems}") from None
    return sources


def check_mixture(data):
    """Validate every source of a mixture spec (what `build_mixture` will read); errors carry the source's index."""
    items = data if isinstance(data, list) else [data]
    errors, prefixes = [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            continue
        prefix = (i,) if isinstance(data, list) else ()
        if not isinstance(item, dict):
            errors.append(invalid((), "a data source is a path or a mapping with 'path' or 'task'", item))
            prefixes.append(prefix)
            continue
        try:
            DataSource.model_validate(item)
        except ValidationError as e:
            errors.append(e)
            prefixes.append(prefix)
    if errors:
        raise relocated(errors, prefixes, "data")
    return data


# A dataset or mixture field of a stage config: references for the pipeline (podium.refs) and every
# source checked when the config is validated.
Mixture = Annotated[DataSpec, AfterValidator(check_mixture)]


def load_source(src: DataSource, seed: int) -> list[dict]:
    if src.task is not None:
        task = get_task(src.task)
        n = src.count or 1000
        rows = task.items(n, split=src.split, seed=seed if src.seed is None else src.seed, **src.difficulty)
        return [task_record(task, r) for r in rows]
    rows = load_rows(src.path, split=src.split, name=src.name)
    if src.columns:
        # columns maps podium's field name -> the source's field name
        rows = [{**r, **{new: r[old] for new, old in src.columns.items() if old in r}} for r in rows]
    return rows


def task_record(task, item: dict) -> dict:
    """A task item as a conversational SFT record that keeps its gold answer."""
    return {
        "prompt": [{"role": "user", "content": item["prompt"]}],
        "completion": [{"role": "assistant", "content": task.format_answer(item)}],
        "answer": item["answer"],
        "task": item["task"],
    }


def load_rows(path: str, split: str = "train", name: str | None = None) -> list[dict]:
    """Rows from a JSONL file, a `save_to_disk` folder or a Hub dataset id."""
    if problem := local_path_problem(path):  # a FIFO, a missing local path: never a Hub dataset id
        raise DataError(f"dataset {problem}")
    p = Path(path)
    if p.is_file():
        if p.suffix in (".jsonl", ".json"):
            rows = read_jsonl(p)
        else:
            raise DataError(f"{p}: unsupported file type (use .jsonl)")
    elif p.is_dir():
        import datasets  # seconds to import (pyarrow, pandas); only saved datasets and Hub ids need it

        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{p}: no split {split!r} (has {', '.join(ds)})")
                ds = ds[split]
            rows = [dict(r, _source=f"{p}[{i}]") for i, r in enumerate(ds)]
        else:
            files = sorted(p.glob("*.jsonl"))
            for f in files:
                if not f.is_file():
                    raise DataError(f"{f}: is a folder, not a JSONL file (every *.jsonl in {p} is read as data)")
            if not files:
                raise DataError(f"{p}: folder holds no *.jsonl files and no saved dataset")
            rows = [r for f in files for r in read_jsonl(f)]
    else:
        hub_online()
        rows = load_hub_dataset(path, split, name)
    if not rows:
        raise DataError(f"{path}: dataset is empty")
    return rows


def load_hub_dataset(path: str, split: str, name: str | None) -> list[dict]:
    import datasets  # see load_rows

    try:
        ds = datasets.load_dataset(path, name=name, split=split)
    except Exception as e:  # datasets raises many types for "not reachable / not found"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"could not load dataset {path!r} (split {split!r}): {msg}") from None
    return [dict(r, _source=f"{path}[{i}]") for i, r in enumerate(ds)]


def draw(rows: list[dict], count: int | None, rng: random.Random, label: str, log=None) -> list[dict]:
    """A seeded random draw of `count` rows without replacement (all rows if count is None)."""
    if count is None:
        return list(rows)
    if count > len(rows):
        if log:
            log.warning(f"{label}: asked for {count} rows, source has {len(rows)}; using all of them")
        return list(rows)
    return rng.sample(rows, count)


def build_mixture(data, seed: int = 0, shuffle: bool = True, log=None) -> tuple[list[dict], dict]:
    """Rows of every source, each drawn to its count, then shuffled together.

    Returns (rows, counts) with counts = {source label: rows taken}.
    """
    rng = random.Random(seed)
    out, counts = [], {}
    for i, src in enumerate(as_sources(data)):
        label = src.path or f"task:{src.task}"
        rows = load_source(src, seed)
        taken = rows if src.task is not None else draw(rows, src.count, random.Random(f"{seed}:{i}:{label}"), label, log)
        counts[label] = counts.get(label, 0) + len(taken)
        out.extend(taken)
    if not out:
        raise DataError("the dataset mixture is empty")
    if shuffle:
        rng.shuffle(out)
    return out, counts
