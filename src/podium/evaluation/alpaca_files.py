"""alpaca_eval's released CSV files that its length-controlled GLM reads: `df_gamed.csv` (the baseline against itself
prompted verbose or concise, `GamedRows`) and the per-instruction difficulty table, each field checked with
file:line errors."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from podium.errors import DataError
from podium.limits import JSON_FILE, read_bounded


@dataclass
class GamedRows:
    """AlpacaEval's `df_gamed.csv`: the baseline against itself prompted verbose / concise. Arrays [M]."""

    preference: np.ndarray  # in [0, 1] (the file stores preference - 1); NaN rows are skipped by the fit
    std_delta_len: np.ndarray  # (len(baseline) - len(gamed)) / std, as the file stores it
    instruction_difficulty: np.ndarray
    index: np.ndarray  # instruction index per row
    not_gamed_baseline: np.ndarray  # bool; False on every row of the released file
    difficulty_by_index: dict[int, float]  # first row of each index, as alpaca_eval builds its lookup
    index_order_matches_rows: bool  # first row of index k is row k (alpaca_eval looks up by row label)
    source: str = "<df_gamed>"


def csv_rows(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, dict]]]:
    path = Path(path)
    try:
        text = read_bounded(path, JSON_FILE, DataError, what="CSV file").decode("utf-8")
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, row) for row in reader]
            header = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a CSV file ({e})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return header, rows


def csv_float(row: dict, name: str, where: str) -> float:
    text = (row.get(name) or "").strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: column `{name}` = {text!r} is not a number") from None


def csv_bool(row: dict, name: str, where: str) -> bool:
    text = (row.get(name) or "").strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    raise DataError(f"{where}: column `{name}` = {text!r} is not True/False")


def read_df_gamed(path: str | os.PathLike) -> GamedRows:
    """AlpacaEval's `df_gamed.csv` (columns `index`, `preference` in [0, 1], `std_delta_len`,
    `instruction_difficulty`, `not_gamed_baseline`; others, like `model`, are ignored)."""
    header, rows = csv_rows(path)
    needed = ("index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")
    absent = [c for c in needed if c not in header]
    if absent:
        raise DataError(f"{path}: column(s) {', '.join(absent)} missing; AlpacaEval's df_gamed.csv has "
                        f"{', '.join(needed)}")
    pref, sdl, diff, index, not_gamed = [], [], [], [], []
    for line, row in rows:
        where = f"{path}:{line}"
        p = csv_float(row, "preference", where)
        if not (math.isnan(p) or 0 <= p <= 1):
            raise DataError(f"{where}: column `preference` = {p}: df_gamed stores preferences in [0, 1]")
        i = csv_float(row, "index", where)
        if math.isnan(i) or not i.is_integer() or i < 0:
            raise DataError(f"{where}: column `index` = {row.get('index')!r} is not an instruction index")
        for name, out in (("std_delta_len", sdl), ("instruction_difficulty", diff)):
            v = csv_float(row, name, where)
            if math.isnan(v):
                raise DataError(f"{where}: column `{name}` is empty")
            out.append(v)
        pref.append(p)
        index.append(int(i))
        not_gamed.append(csv_bool(row, "not_gamed_baseline", where))
    index_arr = np.asarray(index, dtype=int)
    first_row: dict[int, int] = {}
    for r, i in enumerate(index):
        first_row.setdefault(i, r)
    return GamedRows(
        preference=np.asarray(pref), std_delta_len=np.asarray(sdl), instruction_difficulty=np.asarray(diff),
        index=index_arr, not_gamed_baseline=np.asarray(not_gamed, dtype=bool),
        difficulty_by_index={i: diff[r] for i, r in first_row.items()},
        index_order_matches_rows=all(i == r for i, r in first_row.items()), source=str(path),
    )


def read_instruction_difficulty(path: str | os.PathLike) -> dict[int, float]:
    """AlpacaEval's `instruction_difficulty.csv`: the instruction index, then its difficulty (a header row)."""
    header, rows = csv_rows(path)
    if len(header) < 2:
        raise DataError(f"{path}: expected two columns (index, instruction_difficulty), found {header}")
    key, value = header[0], header[1]
    out: dict[int, float] = {}
    for line, row in rows:
        where = f"{path}:{line}"
        i = csv_float(row, key, where)
        v = csv_float(row, value, where)
        if math.isnan(i) or not i.is_integer() or i < 0:
            raise DataError(f"{where}: column `{key or 'index'}` = {row.get(key)!r} is not an instruction index")
        if math.isnan(v):
            raise DataError(f"{where}: column `{value}` is empty")
        out[int(i)] = v
    return out
