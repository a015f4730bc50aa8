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
from podium.merging.lora import LoraAdapter
from podium.models.dtypes import FROM_SAFETENSORS, nbytes
from podium.models.publish import HUB_MODEL_PATTERNS


def resolve_model_path(name: str) -> Path:
    """A local folder as is; a Hub id from the local cache (or a download when online)."""
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download  # here, not on top: 0.5 s of imports only Hub ids need

        return Path(snapshot_download(name, allow_patterns=HUB_MODEL_PATTERNS))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no access: all mean "not available"
        raise PodiumError(f"model {name!r}: not a local folder and not available from the Hub "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def read_safetensors_header(file: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype, int]]:
    """name -> (shape, dtype, absolute byte offset) from a safetensors file's JSON header."""
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise PodiumError(f"{file}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise PodiumError(f"{file}: not a safetensors file (bad header)") from None
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] not in FROM_SAFETENSORS:
            raise PodiumError(f"{file}: tensor {key} has unsupported dtype {info['dtype']}")
        out[key] = (tuple(info["shape"]), FROM_SAFETENSORS[info["dtype"]], 8 + n + info["data_offsets"][0])
    return out


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
        self.config = json.loads(cfg.read_text())
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
        return self.config.get("text_config", self.config)

    @property
    def num_layers(self) -> int:
        cfg = self.text_config
        if "num_hidden_layers" not in cfg:
            raise PodiumError(f"model {self.ref}: config.json has no num_hidden_layers")
        return int(cfg["num_hidden_layers"])

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
