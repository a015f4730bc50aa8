"""`podium run --dry-run` reads the first rows of every data source before anything trains.

For each stage that will run, each source it reads (podium.data.stage_sources) that is local, or a
Hub dataset that answers (read by streaming, nothing downloaded in full), has its first rows read
through the source's format for the stage's use, so a missing or nested field, a wrong type or an
unknown role is reported with source and row now, not after earlier stages spent GPU hours. Sources
that are an earlier stage's output and do not exist yet, or Hub datasets out of reach (the Hub
preflight, podium.hub, names those), are not read.

It also applies the one rendering rule (podium.data.rendering) to those rows: records that need a
chat template (conversations, system prompts, task turns) for a model whose tokenizer has none are
a config error naming the stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from podium.data.fields import FieldError, get_field
from podium.data.loaders import open_source, stream_head
from podium.data.mixture import DataSource, load_source, read_source_rows
from podium.data.rendering import TEXT_FIELDS, is_plain
from podium.data.stage_sources import STAGE_SOURCES, StageView, has_template, setting, stage_sources, tokenizer_origin
from podium.errors import PodiumError
from podium.hub import REPO_ID, reachable

HEAD_ROWS = 5
_cache: dict[str, tuple[list[dict] | None, str | None]] = {}


def source_key(src: DataSource, use: str | None, rows: int) -> str:
    """Memo key: the source's settings and, for a local file or folder, its size and modification time."""
    stamp = None
    if src.path and Path(src.path).exists():
        st = os.stat(src.path)
        stamp = (st.st_size, st.st_mtime_ns)
    return json.dumps([src.model_dump(mode="json"), use, rows, stamp], sort_keys=True, default=str)


def head_records(src: DataSource, use: str | None, rows: int = HEAD_ROWS) -> list[dict] | None:
    """The first `rows` records of a source read for `use`; None when it cannot be read now (not yet written, or a
    Hub dataset out of reach). Errors are the reader's DataError (source, row, field)."""
    if src.task is not None:
        return load_source(src.model_copy(update={"count": rows}), seed=0, use=use)
    path = Path(src.path)
    if path.exists():
        source = open_source(src.path, src.split, src.name, src.revision, src.data_files)
        return read_source_rows(source.head(rows), src, use, seed=0)
    if not REPO_ID.match(src.path) or not reachable(src.path, "dataset")[0]:
        return None
    head = stream_head(src.path, src.split, src.name, src.revision, src.data_files, rows)
    return read_source_rows(enumerate(head), src, use, seed=0)


def cached_head(src: DataSource, use: str | None, rows: int) -> list[dict] | None:
    key = source_key(src, use, rows)
    if key not in _cache:
        try:
            _cache[key] = (head_records(src, use, rows), None)
        except PodiumError as e:
            _cache[key] = (None, str(e))
    records, error = _cache[key]
    if error is not None:
        raise PodiumError(error)
    return records


def needs_template(record: dict) -> bool:
    return not is_plain(record) and ("messages" in record or any(isinstance(record.get(k), list) for k in TEXT_FIELDS))


def use_problems(view: StageView, records: list[dict]) -> list[str]:
    """What the stage itself needs of its records beyond the format: gold answers (sgd), builder fields (pairs)."""
    out = []
    if view.kind == "sgd":
        missing = [r.get("_source", "a row") for r in records if "answer" not in r or "task" not in r]
        if missing:
            out.append(f"{missing[0]}: SGD needs prompts with gold answers ('answer' and 'task'); read them from a "
                       "dataset with `gold: {field: ..., pattern: ..., checker: ...}`")
    if view.kind == "pairs":
        fields = [setting(view.config, "prompt_field"), setting(view.config, "answer_field")]
        if setting(view.config, "builder") == "multiple_choice":
            fields += [setting(view.config, "choices_field"), setting(view.config, "labels_field")]
        for record in records:
            if "task" in record and "answer" in record:
                continue  # a built-in task item: the builder reads its own fields
            for path in filter(None, fields):
                try:
                    get_field(record, path)
                except FieldError as e:
                    out.append(f"{record.get('_source', 'a row')}: {e}")
                    break
    return out


def source_problems(stages: list[StageView], only: set[str] | None = None, rows: int = HEAD_ROWS) -> list[str]:
    """Schema problems of the first `rows` rows of every readable source of `stages` (those named in `only`, when
    given; the others only lead back to a tokenizer), and chat-template needs a tokenizer cannot meet; one line
    each, naming stage, source and row."""
    problems = []
    for view in stages:
        if view.kind not in STAGE_SOURCES or (only is not None and view.name not in only):
            continue
        use = STAGE_SOURCES[view.kind][1]
        needs = None
        for i, src in enumerate(stage_sources(view)):
            where = f"stage {view.name!r}: data source {i} ({src.label()})"
            try:
                records = cached_head(src, use, rows)
            except PodiumError as e:
                problems.append(f"{where}: {e}")
                continue
            if records is None:
                continue
            problems.extend(f"{where}: {p}" for p in use_problems(view, records))
            needs = needs or next((r.get("_source", src.label()) for r in records if needs_template(r)), None)
        if needs is not None and use is not None and has_template(tokenizer_origin(stages, view)) is False:
            problems.append(f"stage {view.name!r}: {needs} is a conversation (message list) and the model's tokenizer "
                            "has no chat template: use a model with one, or set `chat_template: false` on the source")
    return problems
