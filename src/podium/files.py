"""File I/O every layer uses: JSONL records read strictly with file:line errors, and atomic writers (a hidden
per-process temporary name `.<name>.<pid>.tmp`, then a rename) for JSONL, JSON and text."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from podium.errors import DataError
from podium.limits import JSONL_FILE, JSONL_LINE, bounded_lines, check_size, open_regular


def is_number(v) -> bool:
    """A JSON number (int or float), not a boolean."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """Read a JSONL file; a malformed line or a missing field is an error naming file and line.

    Only a regular file is read, of at most `podium.limits.JSONL_FILE` bytes, one line of at most
    `JSONL_LINE` bytes at a time (a 200 MB single line is refused having read 16 MiB of it)."""
    path = Path(path)
    rows = []
    with open_regular(path, DataError, what="JSONL file") as f:
        check_size(f, path, JSONL_FILE, DataError)
        for lineno, raw in bounded_lines(f, path, JSONL_LINE, DataError):
            line = decode_line(raw, path, lineno)
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply to be a record") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field {missing[0]!r}")
            row.setdefault("_source", f"{path}:{lineno}")
            rows.append(row)
    return rows


def decode_line(raw: bytes, path, lineno: int) -> str:
    """One line of a text file as UTF-8; other bytes are a DataError naming file, line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "save the file as UTF-8") from None


def temp_path(path: Path) -> Path:
    """The temporary name `path` is written under before its rename: hidden, and unique per process, so two
    processes writing the same file never write into one temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write rows to `path` via a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({k: v for k, v in row.items() if k != "_source"}, ensure_ascii=False) + "\n" for row in rows)
    os.replace(tmp, path)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` via a temporary file (`temp_path`) and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write `obj` as indented JSON (non-JSON values as `str`) atomically, as `write_text`."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
