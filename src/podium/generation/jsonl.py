"""JSONL reading and writing for the generate stage.

Stand-in with the same signatures as `podium.data.records.read_jsonl/write_jsonl`
(docs/INTERFACES.md); stage.py prefers that module when it exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from podium.errors import DataError


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """One dict per non-empty line; a malformed line raises DataError naming file:line."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike, rows) -> None:
    """Write rows atomically (temp file, then rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    os.replace(tmp, out)
