"""Rows of a dataset source, read only as far as a draw needs them.

A source is a JSONL file (or a folder of them), a folder saved with `datasets.save_to_disk`, or a Hub
dataset id. Each opens as `SourceRows`: its length, and `take(indices)` yielding the rows at those
indices as Python dicts. Drawing `count` rows of a multi-million-row source therefore builds `count`
dicts, never the whole set:

- JSONL: one pass records each line's byte offset (8 bytes a line); drawn lines are parsed from there.
- Arrow (a saved folder, or a Hub dataset after `datasets` downloaded and converted it): the files are
  read batch by batch from the file, not memory-mapped, and only the drawn rows of a batch become
  dicts; a memory-mapped read would leave every touched page of a multi-GB file resident.

Hub ids load with `datasets.load_dataset`. A dataset published with a loading script (which
`datasets` >= 4 refuses: "Dataset scripts are no longer supported") is read from the Hub's parquet
conversion (`revision: refs/convert/parquet`, files `CONFIG/SPLIT/*.parquet`) or from the files a
source names with `data_files:`; when neither works the error says which setting fixes it.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

from podium.errors import DataError
from podium.files import decode_line
from podium.hub import REPO_ID, hub_online, local_path_problem
from podium.limits import JSONL_FILE, JSONL_LINE, bounded_lines, check_size, open_regular

PARQUET_REVISION = "refs/convert/parquet"
SCRIPT_REFUSED = "Dataset scripts are no longer supported"
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow", ".txt": "text"}


class SourceRows:
    """A source's rows by index: `len()`, `take(indices)` (rows in the order asked), `head(n)`."""

    label: str

    def __len__(self) -> int:
        raise NotImplementedError

    def take(self, indices: Iterable[int]) -> Iterator[tuple[int, dict]]:
        raise NotImplementedError

    def head(self, n: int) -> Iterator[tuple[int, dict]]:
        return self.take(range(min(n, len(self))))


def in_order(indices: list[int], read_sorted) -> Iterator[tuple[int, dict]]:
    """Rows at `indices` in that order, from `read_sorted(sorted unique indices)` that yields (index, row) ascending."""
    if all(a < b for a, b in zip(indices, indices[1:])):
        yield from read_sorted(indices)
        return
    found = dict(read_sorted(sorted(set(indices))))
    for i in indices:
        yield i, found[i]


class JsonlRows(SourceRows):
    """Lines of one or more JSONL files; `_source` of a row is `FILE:LINE`."""

    def __init__(self, files: list[Path], label: str):
        self.files, self.label = files, label
        self.file_of, self.offsets, self.linenos = array("i"), array("q"), array("q")
        for k, f in enumerate(files):
            # A regular file of bounded size, read a bounded line at a time (podium.limits): never a FIFO,
            # /dev/zero, or a 200 MB line held whole.
            with open_regular(f, DataError, what="JSONL file") as fh:
                check_size(fh, f, JSONL_FILE, DataError)
                pos = 0
                for lineno, raw in bounded_lines(fh, f, JSONL_LINE, DataError):
                    if raw.strip():
                        self.file_of.append(k)
                        self.offsets.append(pos)
                        self.linenos.append(lineno)
                    pos += len(raw)

    def __len__(self) -> int:
        return len(self.offsets)

    def take(self, indices: Iterable[int]) -> Iterator[tuple[int, dict]]:
        return in_order(list(indices), self._read_sorted)

    def _read_sorted(self, indices: list[int]) -> Iterator[tuple[int, dict]]:
        handles: dict[int, object] = {}
        try:
            for i in indices:
                k = self.file_of[i]
                fh = handles.get(k) or handles.setdefault(k, open_regular(self.files[k], DataError, "JSONL file"))
                fh.seek(self.offsets[i])
                yield i, parse_line(fh.readline(JSONL_LINE.value + 1), self.files[k], self.linenos[i])
        finally:
            for fh in handles.values():
                fh.close()


def parse_line(raw: bytes, path: Path, lineno: int) -> dict:
    """One JSONL line as a record, errors naming file and line (as podium.files.read_jsonl)."""
    line = decode_line(raw, path, lineno)
    if lineno == 1:
        line = line.removeprefix("\ufeff")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{path}:{lineno}: JSON nested too deeply to be a record") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
    row.setdefault("_source", f"{path}:{lineno}")
    return row


class ArrowRows(SourceRows):
    """Rows of Arrow IPC stream files (what `save_to_disk` and the `datasets` cache write), batch by batch."""

    def __init__(self, files: list[str], num_rows: int, label: str):
        self.files, self.num_rows, self.label = files, num_rows, label

    def __len__(self) -> int:
        return self.num_rows

    def take(self, indices: Iterable[int]) -> Iterator[tuple[int, dict]]:
        return in_order(list(indices), self._read_sorted)

    def _read_sorted(self, indices: list[int]) -> Iterator[tuple[int, dict]]:
        import pyarrow as pa  # pulled in with datasets; only Arrow sources need it

        want, start = 0, 0
        for path in self.files:
            if want == len(indices):
                return
            with pa.OSFile(path, "rb") as f:  # read, not memory-mapped: touched pages do not stay resident
                for batch in pa.ipc.open_stream(f):
                    end = start + batch.num_rows
                    local = []
                    while want < len(indices) and indices[want] < end:
                        local.append(indices[want] - start)
                        want += 1
                    if local:
                        picked = batch.take(pa.array(local, type=pa.int64())).to_pylist()
                        for j, row in zip(local, picked):
                            row["_source"] = f"{self.label}[{start + j}]"
                            yield start + j, row
                    start = end
                    if want == len(indices):
                        return


class DatasetRows(SourceRows):
    """A `datasets.Dataset` read through its own indexing (one that is a view over other files)."""

    def __init__(self, ds, label: str):
        self.ds, self.label = ds, label

    def __len__(self) -> int:
        return len(self.ds)

    def take(self, indices: Iterable[int]) -> Iterator[tuple[int, dict]]:
        indices = list(indices)
        for i, row in zip(indices, self.ds.select(indices)):
            yield i, dict(row, _source=f"{self.label}[{i}]")


def dataset_rows(ds, label: str) -> SourceRows:
    """A loaded `datasets.Dataset` as SourceRows: its Arrow files read batch-wise when it is their plain view."""
    files = [f["filename"] for f in ds.cache_files]
    if ds._indices is None and files and all(os.path.isfile(f) for f in files):
        return ArrowRows(files, len(ds), label)
    return DatasetRows(ds, label)


def open_saved(path: Path, split: str) -> SourceRows:
    import datasets  # seconds to import (pyarrow, pandas); only saved datasets and Hub ids need it

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split {split!r} (has {', '.join(ds)})")
        ds = ds[split]
    return dataset_rows(ds, str(path))


def open_local(path: Path, split: str) -> SourceRows:
    """A JSONL file, a folder of JSONL files, or a `save_to_disk` folder."""
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise DataError(f"{path}: unsupported file type (use .jsonl)")
        return JsonlRows([path], str(path))
    if is_saved(path):
        return open_saved(path, split)
    files = sorted(path.glob("*.jsonl"))
    for f in files:
        if not f.is_file():
            raise DataError(f"{f}: is a folder, not a JSONL file (every *.jsonl in {path} is read as data)")
    if not files:
        raise DataError(f"{path}: folder holds no *.jsonl files and no saved dataset")
    return JsonlRows(files, str(path))


def error_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def data_file_urls(path: str, files: list[str], revision: str | None) -> list[str]:
    """`data_files` of a Hub id (hf:// URLs at `revision`) or of a local folder laid out like the Hub repository."""
    if Path(path).is_dir():
        return [str(Path(path) / f) for f in files]
    at = f"@{revision.replace('/', '%2F')}" if revision else ""
    return [f"hf://datasets/{path}{at}/{f}" for f in files]


def load_data_files(path: str, files: list[str], revision: str | None, streaming: bool = False):
    """The files a source names (`data_files:`) with the builder of their extension (json, parquet, csv)."""
    import datasets  # see open_saved

    suffixes = {Path(f.split("*")[0] if f.endswith("*") else f).suffix for f in files}
    builders = {FILE_BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise DataError(f"{path}: data_files {files} must share one of the extensions {', '.join(FILE_BUILDERS)}")
    return datasets.load_dataset(builders.pop(), data_files=data_file_urls(path, files, revision), split="train",
                                 streaming=streaming)


def load_hub(path: str, split: str, name: str | None, revision: str | None = None,
             data_files: list[str] | None = None, streaming: bool = False):
    """A Hub dataset (or a local folder laid out like its repository) as `datasets` loads it.

    A repository with a loading script is read from its parquet conversion (`CONFIG/SPLIT/*.parquet` at
    `refs/convert/parquet`, or in the folder itself); the error names `data_files:` when that fails too.
    """
    import datasets  # see open_saved

    where = f"dataset {path!r}" + (f" ({name})" if name else "") + f", split {split!r}"
    if data_files:
        try:
            return load_data_files(path, data_files, revision, streaming)
        except DataError:
            raise
        except Exception as e:  # datasets raises many types for "not reachable / not found"
            raise DataError(f"could not load {where} from data_files {data_files}: {error_line(e)}") from None
    try:
        return datasets.load_dataset(path, name=name, split=split, revision=revision, streaming=streaming)
    except Exception as e:
        if SCRIPT_REFUSED not in str(e):
            raise DataError(f"could not load {where}: {error_line(e)}") from None
        script_error = error_line(e)
    converted = [f"{name or 'default'}/{split}/*.parquet"]
    try:
        return load_data_files(path, converted, None if Path(path).is_dir() else PARQUET_REVISION, streaming)
    except Exception as e:
        raise DataError(
            f"could not load {where}: it is published with a loading script, which datasets "
            f"{datasets.__version__} no longer runs ({script_error}); its parquet conversion "
            f"({PARQUET_REVISION}: {converted[0]}) did not load either ({error_line(e)}). Fix: name the "
            "repository's data files in the source, e.g. `data_files: all.jsonl`, or its converted files with "
            f"`revision: {PARQUET_REVISION}` and `data_files: [CONFIG/SPLIT/0000.parquet]`") from None


def open_hub(path: str, split: str, name: str | None, revision: str | None, data_files: list[str] | None) -> SourceRows:
    return dataset_rows(load_hub(path, split, name, revision, data_files), path)


def is_saved(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def open_source(path: str, split: str = "train", name: str | None = None, revision: str | None = None,
                data_files: list[str] | None = None) -> SourceRows:
    """A source's rows: a local JSONL file, JSONL folder or saved dataset; else a Hub id (or a local folder laid out
    like a Hub repository: its `data_files`, or a loading script and its parquet conversion)."""
    if problem := local_path_problem(path):  # a FIFO, a missing local path: never a Hub dataset id
        raise DataError(f"dataset {problem}")
    p = Path(path)
    if not p.exists() and not REPO_ID.match(path):
        raise DataError(f"{path}: no such file or folder (and not a Hub dataset id, ORG/NAME)")
    hub_like = bool(data_files or name or revision) or (p.is_dir() and any(p.glob("*.py")))
    if p.is_file() or (p.is_dir() and (is_saved(p) or not hub_like)):
        return open_local(p, split)
    hub_online()  # one short probe; offline, the libraries look in the local cache only
    return open_hub(path, split, name, revision, data_files)


def stream_head(path: str, split: str, name: str | None, revision: str | None, data_files: list[str] | None,
                n: int) -> list[dict]:
    """The first `n` rows of a Hub dataset without downloading it (streaming), for --dry-run and preview."""
    hub_online()
    ds = load_hub(path, split, name, revision, data_files, streaming=True)
    out = []
    for i, row in enumerate(ds):
        if i >= n:
            break
        out.append(dict(row, _source=f"{path}[{i}]"))
    return out
