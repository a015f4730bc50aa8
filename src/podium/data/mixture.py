"""Dataset mixtures: per-source sample counts, seeded draws, several source kinds.

Rhea-72b's SFT set is "a 100k random draw from each of these sets, 1k from each of
those"; in a recipe:

    data:
      - {path: Open-Orca/SlimOrca, count: 100000, format: sharegpt}
      - {path: data/local.jsonl, count: 1000}
      - {task: arithmetic, count: 2000, difficulty: {max_digits: 2}}

A source is a local JSONL file, a folder saved with `datasets.save_to_disk`, a Hub
dataset id (loaded with `datasets`, podium.data.loaders), or a built-in task family. Its
`format` (podium.data.formats) reads each drawn row as the record a stage needs; only the
drawn rows are read.
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from podium.config import NumberRules, invalid, relocated
from podium.data.fields import FieldError, get_field, path_problem
from podium.data.formats import FORMATS, as_plain, column_problems, get_format, read_row
from podium.data.loaders import open_source
from podium.data.rendering import PLAIN_KEY
from podium.data.source_row import ReadSettings, SkipRow
from podium.errors import ConfigError, DataError
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


class GoldAnswer(BaseModel):
    """Where a prompt source's gold answer is, for stages that check responses (sgd, selfplay, eval).

    GSM8K (`openai/gsm8k`) writes the worked solution in `answer` and the final number after `####`:
    `gold: {field: answer, pattern: "####\\s*(.+)$", checker: arithmetic}` gives each prompt `answer`
    (group 1 of the pattern), `task` (the checker) and `reference` (the whole field: SGD's chosen response).
    """

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="field path of the gold answer (or of the worked solution holding it)")
    pattern: str | None = Field(None, description="regex; group 1 (or the whole match) is the answer")
    checker: str = Field("arithmetic", description="the built-in task whose checker compares a response with it")

    @model_validator(mode="after")
    def _check(self):
        if problem := path_problem(self.field):
            raise invalid(("field",), problem, self.field)
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise invalid(("pattern",), f"not a regular expression: {e}", self.pattern) from None
        for _, message in task_problems(self.checker, {}):
            raise invalid(("checker",), message, self.checker)
        return self


class DataSource(NumberRules):
    """One source of a mixture: a dataset (`path`: JSONL, saved folder or Hub id) or a built-in `task`."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    task: str | None = None
    count: int | None = Field(None, ge=1, description="random draw of this many rows; all rows if unset")
    split: str = "train"
    name: str | None = Field(None, description="Hub dataset config name")
    revision: str | None = Field(None, description="Hub revision, e.g. refs/convert/parquet (the parquet conversion)")
    data_files: list[str] | None = Field(None, description="files of the dataset to read (Hub repository or folder)")
    format: str = Field("auto", description="how a row reads: " + ", ".join(FORMATS) + " (podium.data.formats)")
    columns: dict[str, str] | None = Field(None, description="the format's roles at other field paths, e.g. "
                                           "{prompt: instruction} or {completion: 'chatgpt_answers[0]'}")
    role_key: str | None = Field(None, description="messages/sharegpt: the key of a turn's role (from, role)")
    content_key: str | None = Field(None, description="messages/sharegpt: the key of a turn's text (value, content)")
    roles: dict[str, str] | None = Field(None, description="messages/sharegpt: source role name -> system, user, "
                                         "assistant")
    chat_template: bool = Field(True, description="false: plain text, no chat template (base-model pretraining)")
    gold: GoldAnswer | None = None
    difficulty: dict[str, Any] = Field(default_factory=dict, description="task difficulty settings")
    seed: int | None = None

    @field_validator("data_files", mode="before")
    @classmethod
    def _one_or_more(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.path is None) == (self.task is None):
            raise invalid((), "each data source needs exactly one of 'path' or 'task'", None)
        if self.task is not None:
            for loc, message in task_problems(self.task, self.difficulty, self.count):
                raise invalid(loc, message, self.task if loc == ("task",) else self.difficulty.get(loc[-1]))
            for key in ("columns", "data_files", "revision", "gold", "role_key", "content_key", "roles"):
                if getattr(self, key) is not None:
                    raise invalid((key,), f"{key!r} is a setting of dataset sources (`path`), not of a task",
                                  getattr(self, key))
        if self.format not in FORMATS:
            raise invalid(("format",), f"unknown format {self.format!r}; known: {', '.join(FORMATS)}", self.format)
        for role, message in column_problems(self.format, self.columns):
            raise invalid(("columns", role), message, role)
        for role, path in (self.columns or {}).items():
            if problem := path_problem(path):
                raise invalid(("columns", role), problem, path)
        if self.format not in ("messages", "sharegpt"):
            for key in ("role_key", "content_key", "roles"):
                if getattr(self, key) is not None:
                    raise invalid((key,), f"{key!r} is a setting of the messages and sharegpt formats "
                                  f"(this source's format is {self.format!r})", getattr(self, key))
        for name, role in (self.roles or {}).items():
            if role not in ("system", "user", "assistant"):
                raise invalid(("roles", name), f"maps to {role!r}; roles are system, user, assistant", role)
        return self

    def label(self) -> str:
        return self.path or f"task:{self.task}"

    def read_settings(self, seed: int, index: int = 0) -> ReadSettings:
        return ReadSettings(self.role_key, self.content_key, self.roles, self.chat_template,
                            self.seed if self.seed is not None else seed, index)


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


def load_source(src: DataSource, seed: int, use: str | None = None, skipped: dict | None = None,
                index: int = 0, log=None) -> list[dict]:
    """The rows of one source, drawn to its `count` and read for `use` ("sft", "pairs", "prompts"; None: as published).

    A dataset is opened lazily (podium.data.loaders) and only the drawn rows are read, in file order, each turned
    into its record at once: what stays in memory is the records, in the order drawn. `skipped` collects
    {reason: rows} of rows the format skipped (an empty answer, a tie).
    """
    if src.task is not None:
        task = get_task(src.task)
        n = src.count or 1000
        rows = task.items(n, split=src.split, seed=seed if src.seed is None else src.seed, **src.difficulty)
        records = [task_record(task, r) for r in rows]
        return [as_plain(r) for r in records] if not src.chat_template else records
    source = open_source(src.path, split=src.split, name=src.name, revision=src.revision, data_files=src.data_files)
    if len(source) == 0:
        raise DataError(f"{src.path}: dataset is empty")
    indices = draw_indices(len(source), src.count, random.Random(f"{seed}:{index}:{src.label()}"), src.label(), log)
    if isinstance(indices, range):
        return read_source_rows(source.take(indices), src, use, seed, skipped)
    slot = {i: k for k, i in enumerate(indices)}
    out: list[dict | None] = [None] * len(indices)
    fmt = get_format(src.format)
    for i, raw in source.take(sorted(indices)):
        out[slot[i]] = read_one(raw, i, src, use, fmt, seed, skipped)
    return [r for r in out if r is not None]


def read_source_rows(pairs: Iterable[tuple[int, dict]], src: DataSource, use: str | None, seed: int,
                     skipped: dict | None = None) -> list[dict]:
    """(row index, published row) -> the records `use` needs; skipped rows are counted in `skipped`."""
    fmt = get_format(src.format)
    return [r for i, raw in pairs if (r := read_one(raw, i, src, use, fmt, seed, skipped)) is not None]


def read_one(raw: dict, i: int, src: DataSource, use: str | None, fmt, seed: int, skipped: dict | None) -> dict | None:
    """Row `i` of a source as the record `use` needs (as published, with `columns` added, for None); None if skipped."""
    where = raw.get("_source", f"{src.label()}[{i}]")
    if use is None:
        mapped = {new: _column(raw, path, where) for new, path in (src.columns or {}).items()}
        return {**raw, **mapped, **({} if src.chat_template else {PLAIN_KEY: False})}
    try:
        record = read_row(raw, use, fmt, src.columns or {}, src.read_settings(seed, i), where, src.gold)
    except SkipRow as e:
        if skipped is not None:
            skipped[e.reason] = skipped.get(e.reason, 0) + 1
        return None
    record["_source"] = where
    return record


def _column(raw: dict, path: str, where: str):
    try:
        return get_field(raw, path)
    except FieldError as e:
        raise DataError(f"{where}: {e}") from None


def task_record(task, item: dict) -> dict:
    """A task item as a conversational SFT record that keeps its gold answer."""
    return {
        "prompt": [{"role": "user", "content": item["prompt"]}],
        "completion": [{"role": "assistant", "content": task.format_answer(item)}],
        "answer": item["answer"],
        "task": item["task"],
    }


def load_rows(path: str, split: str = "train", name: str | None = None) -> list[dict]:
    """Every row of a JSONL file, a `save_to_disk` folder or a Hub dataset id, as published."""
    source = open_source(path, split=split, name=name)
    if len(source) == 0:
        raise DataError(f"{path}: dataset is empty")
    return [row for _, row in source.take(range(len(source)))]


def draw_indices(n: int, count: int | None, rng: random.Random, label: str, log=None) -> list[int] | range:
    """A seeded random draw of `count` of `n` row indices without replacement (all of them if count is None).

    `rng.sample(range(n), count)` picks the indices `rng.sample(rows, count)` picks rows at, so a draw is the
    one podium made when it held every row in memory.
    """
    if count is None:
        return range(n)
    if count > n:
        if log:
            log.warning(f"{label}: asked for {count} rows, source has {n}; using all of them")
        return range(n)
    return rng.sample(range(n), count)


def draw(rows: list[dict], count: int | None, rng: random.Random, label: str, log=None) -> list[dict]:
    """A seeded random draw of `count` rows without replacement (all rows if count is None)."""
    return [rows[i] for i in draw_indices(len(rows), count, rng, label, log)]


def build_mixture(data, seed: int = 0, shuffle: bool = True, log=None, use: str | None = None,
                  skipped: dict | None = None) -> tuple[list[dict], dict]:
    """Rows of every source, each drawn to its count and read for `use` (podium.data.formats), then shuffled.

    Returns (rows, counts) with counts = {source label: rows taken}. Rows a format skips (empty values,
    ties) are logged per source and, when `skipped` is given, counted there as {source label: {reason: n}}.
    """
    rng = random.Random(seed)
    out, counts = [], {}
    for i, src in enumerate(as_sources(data)):
        label = src.label()
        lost: dict[str, int] = {}
        taken = load_source(src, seed, use, lost, index=i, log=log)
        counts[label] = counts.get(label, 0) + len(taken)
        if lost:
            if log:
                log.warning(f"{label}: skipped {sum(lost.values())} rows with nothing to train on: "
                            + ", ".join(f"{k} {v}" for k, v in sorted(lost.items())))
            if skipped is not None:
                merged = skipped.setdefault(label, {})
                for reason, n in lost.items():
                    merged[reason] = merged.get(reason, 0) + n
        out.extend(taken)
    if not out:
        raise DataError("the dataset mixture is empty" + (f" (every row skipped: {skipped})" if skipped else ""))
    if shuffle:
        rng.shuffle(out)
    return out, counts
