"""Input models of a merge: find the folder (local or Hub cache), index its safetensors, read tensors.

Only headers are read up front, so planning costs no weight I/O. A tensor is read with one plain
`readinto` into a fresh buffer (no mmap: untouched weights never count as resident memory, and
the read releases the GIL, so a reader thread overlaps it with computing). A `BASE+ADAPTER`
reference folds the LoRA adapter into each weight as it is read.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from podium.errors import PodiumError
from podium.hub import check_local, hub_online
from podium.limits import open_regular, read_json_bounded
from podium.merging.lora import LoraAdapter
from podium.models.dtypes import FROM_SAFETENSORS, nbytes
from podium.models.publish import HUB_MODEL_PATTERNS


def resolve_model_path(name: str) -> Path:
    """A local folder as is; a Hub id from the local cache (or a download when online)."""
    check_local(name, "model")  # a local path that does not exist is not a Hub id
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    hub_online()
    try:
        from huggingface_hub import snapshot_download  # here, not on top: 0.5 s of imports only Hub ids need

        return Path(snapshot_download(name, allow_patterns=HUB_MODEL_PATTERNS))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no access: all mean "not available"
        raise PodiumError(f"model {name!r}: not a local folder and not available from the Hub "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


# safetensors' own bound on the JSON header (its Rust reader refuses larger ones).
MAX_HEADER_BYTES = 100_000_000


def read_safetensors_header(file: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype, int]]:
    """name -> (shape, dtype, absolute byte offset) from a safetensors file's JSON header.

    The header is checked as the safetensors format defines it: a bounded JSON object whose entries have a
    known dtype, a shape of non-negative integers and data offsets that match the shape and lie in the file,
    so a damaged or hostile file is a PodiumError naming it, never a traceback or a read past its end."""
    with open_regular(file, PodiumError, what="safetensors file") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) != 8:
            raise PodiumError(f"{file}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise PodiumError(f"{file}: not a safetensors file (header length {n} does not fit the file)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError):
            raise PodiumError(f"{file}: not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise PodiumError(f"{file}: not a safetensors file (the header is not a JSON object)")
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list) or not isinstance(
                info.get("data_offsets"), list) or len(info["data_offsets"]) != 2:
            raise PodiumError(f"{file}: tensor {key}: damaged header entry (dtype, shape, data_offsets)")
        if info.get("dtype") not in FROM_SAFETENSORS:
            raise PodiumError(f"{file}: tensor {key} has unsupported dtype {info.get('dtype')}")
        shape, (begin, end) = info["shape"], info["data_offsets"]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in [*shape, begin, end]):
            raise PodiumError(f"{file}: tensor {key}: shape and data offsets must be integers >= 0")
        dtype = FROM_SAFETENSORS[info["dtype"]]
        if end - begin != nbytes(tuple(shape), dtype) or 8 + n + end > size:
            raise PodiumError(f"{file}: tensor {key}: its data ({begin}..{end}) does not match its shape {shape} or "
                              f"lies past the end of the file ({size} bytes): a truncated or damaged file")
        out[key] = (tuple(shape), dtype, 8 + n + begin)
    return out


def read_config(ref: str, cfg: Path) -> dict:
    """A model's config.json as a dict; a PodiumError naming the file when it is missing or not a JSON object."""
    config = read_json_bounded(cfg, what="config.json")
    if not isinstance(config, dict):
        raise PodiumError(f"model {ref}: {cfg} is not a JSON object")
    return config


class ModelSource:
    """One input model: safetensors index (name -> file), config, optional LoRA applied on read."""

    def __init__(self, ref: str):
        self.ref = ref
        base, _, lora = ref.partition("+")
        self.path = resolve_model_path(base)
        self.lora = LoraAdapter(resolve_model_path(lora)) if lora else None
        cfg = self.path / "config.json"
        if not cfg.is_file():
            raise PodiumError(f"model {ref}: {cfg} not found")
        self.config = read_config(ref, cfg)
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise PodiumError(f"model {ref}: no *.safetensors weights in {self.path} (pickle weights are not read)")
        self.index: dict[str, Path] = {}
        self.meta: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._offsets: dict[str, int] = {}
        for file in files:
            for key, (shape, dtype, start) in read_safetensors_header(file).items():
                self.index[key] = file
                self.meta[key] = (shape, dtype)
                self._offsets[key] = start
        if self.lora:
            self.lora.check_targets(set(self.index))
        self._handles: dict[Path, object] = {}

    @property
    def text_config(self) -> dict:
        """The config holding the decoder's fields (`text_config` of a multimodal model, else the config)."""
        inner = self.config.get("text_config", self.config)
        return inner if isinstance(inner, dict) else self.config

    @property
    def num_layers(self) -> int:
        cfg = self.text_config
        layers = cfg.get("num_hidden_layers") if isinstance(cfg, dict) else None
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
            raise PodiumError(f"model {self.ref}: config.json has no num_hidden_layers (an integer >= 0)")
        return layers

    def location(self, name: str) -> tuple[Path, int, int]:
        """(file, byte offset, byte length) of a stored tensor's data."""
        shape, dtype = self.meta[name]
        return self.index[name], self._offsets[name], nbytes(shape, dtype)

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor (a fresh tensor the caller owns)."""
        file = self.index[name]
        f = self._handles.get(file)
        if f is None:
            # unbuffered: readinto goes straight from the page cache into the tensor, no extra copy
            f = self._handles[file] = open(file, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        shape, dtype = self.meta[name]
        t = torch.empty(shape, dtype=dtype)
        buf = memoryview(t.reshape(-1).view(torch.uint8).numpy())
        pos, offset = 0, self._offsets[name]
        while pos < len(buf):  # a raw read may return fewer bytes than asked
            n = _read_at(f, buf[pos:], offset + pos)
            if n == 0:
                raise PodiumError(f"model {self.ref}: {file} is truncated (tensor {name})")
            pos += n
        return self.lora.apply(name, t) if self.lora else t

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()


def _read_at(f, buf: memoryview, offset: int) -> int:
    """Positional read into `buf` (no shared file position, so reader threads need no lock)."""
    if hasattr(os, "preadv"):
        return os.preadv(f.fileno(), [buf], offset)
    data = os.pread(f.fileno(), len(buf), offset)  # platforms without preadv: one extra copy
    buf[:len(data)] = data
    return len(data)
