"""Pairwise annotations of a model against a baseline, as AlpacaEval writes them and as podium does.

Two row formats, one object per instruction, in a JSON list or a JSONL file:

- AlpacaEval (`annotations.json` of `alpaca_eval evaluate`): `instruction`, `output_1` (the
  baseline's answer), `output_2` (the model's), `preference` on AlpacaEval's scale — 1 = output_1
  wins, 2 = output_2 wins, fractional values for a weighted judge, 1.5 (or the legacy 0) a draw,
  null when the judge gave no answer — plus `index` (the instruction's position in AlpacaEval,
  which keys the instruction difficulty), `generator_1`, `generator_2`, `annotator`, ....
- podium's judgments: `preference` (or `win_prob`) = P(model ≻ baseline) in [0, 1], lengths as
  `model_length` / `baseline_length` or the texts `model_response` / `baseline_response`
  (AlpacaEval measures length in characters), optional `instruction_id` (else `prompt`) and `index`.

Everything is turned into P(model ≻ baseline) ∈ [0, 1] (NaN = not annotated) and character lengths.
Also here: readers for AlpacaEval's `df_gamed.csv` (its baseline prompted to be verbose or concise,
judged against itself, with per-instruction difficulty) and `instruction_difficulty.csv`.
A malformed file is a DataError naming the file, the row and the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from podium.errors import DataError
from podium.files import is_number
from podium.limits import JSON_FILE, read_bounded

ALPACA_FIELDS = ("output_1", "output_2", "generator_1", "generator_2")
PODIUM_LENGTH_FIELDS = ("model_length", "model_response", "baseline_length", "baseline_response")


@dataclass
class Annotations:
    """One model against one baseline: arrays [N], one entry per annotated instruction."""

    preference: np.ndarray  # P(model ≻ baseline) in [0, 1]; NaN where the judge gave no preference
    model_length: np.ndarray  # characters
    baseline_length: np.ndarray
    locations: list[str]  # "file: row i" / "file:line", for messages about a row
    index: np.ndarray | None = None  # AlpacaEval instruction index per row (keys instruction difficulty)
    instruction_ids: list | None = None  # podium: prompt ids, for several samples per instruction
    generator: str | None = None
    baseline: str | None = None
    source: str = "<annotations>"
    format: str = "podium"  # "alpaca_eval" | "podium"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.preference.size)


def read_rows(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """(location, object) for each row of a JSON list or a JSONL file."""
    path = Path(path)
    try:
        text = read_bounded(path, JSON_FILE, DataError, what="annotations file").decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    rows: list[tuple[str, dict]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise DataError(f"{path}: JSON nested too deeply") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of annotations")
        for i, row in enumerate(data, 1):
            rows.append((f"{path}: row {i}", row))
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply") from None
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if not rows:
        raise DataError(f"{path}: no annotations")
    return rows


def alpaca_preference(value, where: str) -> float:
    """AlpacaEval's preference -> P(output_2 ≻ output_1) in [0, 1]; NaN when the judge gave none."""
    if value is None or (is_number(value) and math.isnan(value)):
        return math.nan
    if not is_number(value):
        raise DataError(f"{where}: field `preference`: expected a number on AlpacaEval's scale, got {value!r}")
    if value == 0:  # AlpacaEval's legacy encoding of a draw
        return 0.5
    if not 1 <= value <= 2:
        raise DataError(
            f"{where}: field `preference` = {value!r} is not on AlpacaEval's scale "
            "(1 = output_1/baseline wins, 2 = output_2/model wins, 1.5 or 0 = draw, fractions in between)"
        )
    return float(value) - 1.0


def podium_preference(row: dict, where: str) -> float:
    value = row.get("preference", row.get("win_prob"))
    name = "preference" if "preference" in row else "win_prob"
    if not is_number(value):
        raise DataError(f"{where}: field `{name}` (P(model > baseline)) is missing or not a number")
    if not 0 <= value <= 1:
        hint = (" — AlpacaEval's [1, 2] scale needs its `output_1`/`output_2` fields" if 1 < value <= 2 else "")
        raise DataError(f"{where}: field `{name}` = {value!r}: expected P(model > baseline) in [0, 1]{hint}")
    return float(value)


def text_length(row: dict, name: str, where: str) -> float:
    value = row.get(name)
    if not isinstance(value, str):
        what = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise DataError(f"{where}: field `{name}` is {what}; the length control needs both outputs")
    return float(len(value))


def podium_length(row: dict, who: str, where: str) -> float:
    given, text = row.get(f"{who}_length"), row.get(f"{who}_response")
    if given is not None and (not is_number(given) or given < 0):
        raise DataError(f"{where}: field `{who}_length` = {given!r}: expected a number of characters >= 0")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: field `{who}_response` is not a string ({type(text).__name__})")
    if given is None and text is None:
        raise DataError(f"{where}: give `{who}_length` or `{who}_response`")
    if given is not None and text is not None and len(text) != given:
        raise DataError(f"{where}: field `{who}_length` = {given} but `{who}_response` has {len(text)} characters")
    return float(given if given is not None else len(text))


def single_value(rows: list[tuple[str, dict]], name: str) -> str | None:
    """The one value of `name` over all rows (None if absent); a second value is an error."""
    seen: tuple[str, str] | None = None
    for where, row in rows:
        v = row.get(name)
        if v is None:
            continue
        if seen is None:
            seen = (where, v)
        elif v != seen[1]:
            raise DataError(f"{where}: field `{name}` = {v!r} but {seen[0]} has {seen[1]!r}; a file must hold one "
                            f"model against one baseline (split it by `{name}`)")
    return None if seen is None else str(seen[1])


def instruction_index(rows: list[tuple[str, dict]]) -> np.ndarray | None:
    """`index` per row (ints >= 0), or None when no row has one; a row without it is then an error."""
    if not any("index" in row for _, row in rows):
        return None
    out = []
    for where, row in rows:
        v = row.get("index")
        if not (is_number(v) and float(v).is_integer() and v >= 0):
            what = "missing" if v is None else f"{v!r}, not an instruction index (an integer >= 0)"
            raise DataError(f"{where}: field `index` is {what}; other rows have one")
        out.append(int(v))
    return np.asarray(out, dtype=int)


def annotations_from_rows(rows: list[tuple[str, dict]], source: str = "<annotations>") -> Annotations:
    """Validated `Annotations` from (location, row) pairs in either format (decided by the first row)."""
    first = rows[0][1]
    alpaca = any(k in first for k in ALPACA_FIELDS)
    if not alpaca and not any(k in first for k in (*PODIUM_LENGTH_FIELDS, "win_prob", "preference")):
        raise DataError(f"{rows[0][0]}: neither an AlpacaEval annotation (`output_1`, `output_2`, `preference`) "
                        "nor a podium judgment (`preference`, `model_response`|`model_length`, ...)")
    prefs, mlen, blen = [], [], []
    for where, row in rows:
        if alpaca:
            if "preference" not in row:
                raise DataError(f"{where}: field `preference` is missing (AlpacaEval: 1 = output_1 wins, 2 = output_2)")
            prefs.append(alpaca_preference(row["preference"], where))
            blen.append(text_length(row, "output_1", where))
            mlen.append(text_length(row, "output_2", where))
        else:
            prefs.append(podium_preference(row, where))
            mlen.append(podium_length(row, "model", where))
            blen.append(podium_length(row, "baseline", where))
    out = Annotations(
        preference=np.asarray(prefs, dtype=float), model_length=np.asarray(mlen), baseline_length=np.asarray(blen),
        locations=[w for w, _ in rows], index=instruction_index(rows), source=source,
        format="alpaca_eval" if alpaca else "podium",
        generator=single_value(rows, "generator_2") if alpaca else None,
        baseline=single_value(rows, "generator_1") if alpaca else None,
    )
    if not alpaca:
        ids = [row.get("instruction_id", row.get("prompt")) for _, row in rows]
        if all(i is not None for i in ids) and len(set(map(str, ids))) < len(ids):
            out.instruction_ids = [str(i) for i in ids]
    if np.isnan(out.preference).all():
        raise DataError(f"{source}: no row has a preference")
    return out


def read_annotations(path: str | os.PathLike) -> Annotations:
    """An AlpacaEval annotation file or a podium judgments file (JSON list or JSONL) -> `Annotations`."""
    return annotations_from_rows(read_rows(path), str(path))


def difficulty_per_row(annotations: Annotations, difficulty: dict[int, float], source: str) -> np.ndarray:
    """γ for each annotation row from a mapping index -> difficulty [N]; rows without `index` use their
    position (alpaca_eval does the same); an index the mapping lacks is an error naming the row."""
    index = annotations.index if annotations.index is not None else np.arange(len(annotations))
    out = np.empty(len(index))
    for r, i in enumerate(index):
        if int(i) not in difficulty:
            lo, hi = min(difficulty), max(difficulty)
            what = "field `index`" if annotations.index is not None else "row position (no `index` field)"
            raise DataError(f"{annotations.locations[r]}: {what} = {int(i)} has no instruction difficulty in "
                            f"{source} (it covers {len(difficulty)} instructions, {lo}..{hi})")
        out[r] = difficulty[int(i)]
    return out
