"""A model folder's safetensors files as rank-local loading reads them: which rows of a tensor a rank holds
(`shard_rows`, `local_rows`), and the files' headers and byte ranges (`WeightFiles`), read without loading
whole tensors. Part of FSDP2's rank-local loading (`podium.distributed.fsdp_load`)."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor, Shard

from podium.errors import PodiumError

INDEX = "model.safetensors.index.json"


# --- which rows a rank holds ------------------------------------------------------------------------

def shard_rows(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [start, stop) of an n-row tensor that rank `rank` of `world` holds under FSDP2's Shard(0)
    (`torch.chunk` of n rows into `world` pieces: c = ceil(n / world) rows each, the last ones shorter or empty)."""
    if n == 0:
        return 0, 0
    c = -(-n // world)
    start = min(rank * c, n)
    return start, min(start + c, n)


def local_rows(t: torch.Tensor) -> tuple[int, int] | None:
    """The dim-0 rows this rank's shard of `t` covers; None for a tensor every rank holds whole."""
    if not isinstance(t, DTensor):
        return None
    if len(t.placements) != 1 or not isinstance(t.placements[0], Shard) or t.placements[0].dim != 0:
        raise PodiumError(f"rank-local loading reads dim-0 shards; got placements {t.placements}")
    mesh = t.device_mesh
    start, stop = shard_rows(t.shape[0], mesh.size(), mesh.get_local_rank())
    if t.to_local().shape[0] != stop - start:
        raise PodiumError(f"rank-local loading: local shard has {t.to_local().shape[0]} rows, expected {stop - start} "
                          f"(rows {start}:{stop} of {t.shape[0]})")
    return start, stop


# --- the weight files ---------------------------------------------------------------------------------

# safetensors dtype names (the format's header) -> torch dtypes
ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
MAX_HEADER = 100 * 2**20  # the safetensors format's own bound on a header


@dataclass
class WeightFiles:
    """The safetensors files of a model folder and which file holds each tensor (the index of a sharded layout,
    else every `*.safetensors` file's own keys). Read rows with `rows` inside `with files:`.

    Rows are read with positioned reads of exactly their bytes (a tensor is stored row-major, so rows [a, b) are
    one contiguous byte range), not through a memory map: the pages of a mapped file count in the process's
    resident memory while the file stays open, and the kernel's read-ahead maps neighbouring rows too. Each
    file's header is checked (dtype, shape, offsets inside the file) before any of its bytes are used."""

    folder: Path
    where: dict[str, str] = field(default_factory=dict)  # tensor name -> file name
    _headers: dict[str, tuple[int, dict]] = field(default_factory=dict, repr=False)  # file -> (data start, header)
    _open: dict[str, object] = field(default_factory=dict, repr=False)
    _stack: ExitStack | None = field(default=None, repr=False)
    bytes_read: int = 0

    @classmethod
    def of(cls, folder: str | os.PathLike) -> WeightFiles:
        folder = Path(folder)
        index = folder / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                files = set(weight_map.values())
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise PodiumError(f"{index}: not a safetensors index ({type(e).__name__}: {e}); expected "
                                  '{"weight_map": {tensor: file}}') from None
            for name in files:
                if not isinstance(name, str) or "/" in name or name.startswith(".") or not (folder / name).is_file():
                    raise PodiumError(f"{index}: names {name!r}, which is not a file in {folder}")
            return cls(folder, dict(weight_map))
        files = sorted(p.name for p in folder.glob("*.safetensors"))
        if not files:
            raise PodiumError(f"{folder}: no *.safetensors weights to load")
        out = cls(folder)
        for name in files:
            out.where.update(dict.fromkeys(out._header(name)[1], name))
        return out

    def keys(self):
        return self.where.keys()

    def __enter__(self) -> WeightFiles:
        self._stack = ExitStack()
        return self

    def __exit__(self, *exc) -> None:
        self._open.clear()
        if self._stack is not None:
            self._stack.close()
        self._stack = None

    def _header(self, file: str) -> tuple[int, dict]:
        """(offset of the data, {tensor: {dtype, shape, data_offsets}}) of one file, checked."""
        if file not in self._headers:
            path = self.folder / file
            try:
                size = path.stat().st_size
                with open(path, "rb") as f:
                    n = int.from_bytes(f.read(8), "little")
                    if not 0 < n <= min(MAX_HEADER, size - 8):
                        raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
                    header = json.loads(f.read(n))
                header.pop("__metadata__", None)
                for name, entry in header.items():
                    begin, end = entry["data_offsets"]
                    count = 1
                    for d in entry["shape"]:
                        count *= int(d)
                    itemsize = torch.empty((), dtype=ST_DTYPES[entry["dtype"]]).element_size()
                    if not 0 <= begin <= end <= size - 8 - n or end - begin != count * itemsize:
                        raise ValueError(f"tensor {name!r}: offsets {begin}..{end} do not hold shape {entry['shape']} "
                                         f"of {entry['dtype']} inside the file")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise PodiumError(f"{path}: damaged or unreadable safetensors file ({type(e).__name__}: {e})") from None
            self._headers[file] = (8 + n, header)
        return self._headers[file]

    def _entry(self, name: str) -> tuple[str, int, dict]:
        file = self.where[name]
        start, header = self._header(file)
        if name not in header:
            raise PodiumError(f"{self.folder / file}: no tensor {name!r}, which {INDEX} places there")
        return file, start, header[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._entry(name)[2]["shape"])

    def rows(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) of tensor `name` (all of it when start is None), read from its file alone."""
        file, data, entry = self._entry(name)
        shape = [int(d) for d in entry["shape"]]
        dtype = ST_DTYPES[entry["dtype"]]
        if start is None or not shape:
            start, stop = 0, (shape[0] if shape else 1)
        rows = max(0, stop - start)
        begin, end = entry["data_offsets"]
        row_bytes = (end - begin) // (shape[0] if shape and shape[0] else 1)
        out_shape = [rows, *shape[1:]] if shape else []
        if rows == 0 or row_bytes == 0:
            return torch.empty(out_shape, dtype=dtype)
        if self._stack is None:
            raise RuntimeError("WeightFiles.rows outside `with files:`")
        if file not in self._open:
            self._open[file] = self._stack.enter_context(open(self.folder / file, "rb"))
        f = self._open[file]
        buffer = bytearray(rows * row_bytes)
        f.seek(data + begin + start * row_bytes)
        if f.readinto(buffer) != len(buffer):
            raise PodiumError(f"{self.folder / file}: {name!r} ends before its header says (truncated file?)")
        self.bytes_read += len(buffer)
        return torch.frombuffer(buffer, dtype=dtype).view(out_shape)


