"""Entries of the reference log-prob cache on disk: where they live, how they are written and verified.

The cache (`~/.cache/podium/ref_logps`, or `$PODIUM_CACHE/ref_logps`) outlives runs and may be shared, so an
entry is never trusted blindly: each file carries in its safetensors metadata the key, the shape, the dtype,
a checksum of the tensor's bytes and an HMAC of all of them under the user's cache key (podium.cache_auth),
and is read back only when all of them match (and every value is finite). A checksum alone proves nothing
against an edit (a poisoned entry with its checksum recomputed turned a DPO loss of 0.69 into 0.05); the
HMAC needs the key, which lives outside the cache. podium.training.reference decides what is cached (the
key) and when.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from podium.cache_auth import cache_root, sign, verify


def default_cache_dir() -> Path:
    return cache_root() / "ref_logps"


# The metadata the HMAC covers (the sha256 covers the values).
SIGNED = ("format", "version", "key", "shape", "dtype", "sha256")


def checksum(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def write_entry(path: Path, key: str, logps: torch.Tensor) -> None:
    """Store `logps` `[N, 2]` with its key, shape, dtype and checksum; atomic (temporary name, then rename)."""
    logps = logps.detach().to("cpu", torch.float32).contiguous()
    meta = {"format": "podium-reference-logps", "version": "2", "key": key,
            "shape": json.dumps(list(logps.shape)), "dtype": "float32", "sha256": checksum(logps)}
    meta["mac"] = sign(*(meta[k] for k in SIGNED))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file({"reference_logps": logps}, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_entry(path: Path, key: str, shape: tuple[int, int]) -> tuple[torch.Tensor | None, str | None]:
    """`(logps, None)` when the entry at `path` verifies; `(None, why)` otherwise (`why` None: no entry)."""
    if not path.exists() and not path.is_symlink():
        return None, None
    if path.is_symlink() or not path.is_file():
        return None, "not a regular file"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = sorted(f.keys())
            if names != ["reference_logps"]:
                return None, f"holds tensors {names[:3]}"
            logps = f.get_tensor("reference_logps")
    except (OSError, SafetensorError) as e:
        return None, f"unreadable ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
    if meta.get("format") != "podium-reference-logps" or meta.get("key") != key:
        return None, "not written for this key (no matching metadata)"
    if tuple(logps.shape) != tuple(shape) or meta.get("shape") != json.dumps(list(shape)):
        return None, f"shape {tuple(logps.shape)}, expected {tuple(shape)}"
    if logps.dtype != torch.float32 or meta.get("dtype") != "float32":
        return None, f"dtype {logps.dtype}, expected float32"
    if meta.get("sha256") != checksum(logps):
        return None, "checksum mismatch (the values were changed or damaged)"
    if not verify(meta.get("mac"), *(meta.get(k, "") for k in SIGNED)):
        return None, "not authenticated by this user's cache key (written elsewhere, by an older podium, or edited)"
    if not bool(torch.isfinite(logps).all()):
        return None, "non-finite values"
    return logps, None
