"""Reference log-probs, computed once before training and cached on disk.

The cache key is a hash of (a) the reference weights (a checksum of every tensor the reference
forward uses; LoRA adapter tensors are left out when the reference is the adapter-disabled
model), (b) the tokenised data (token ids of every kept pair, which also covers the tokenizer,
chat template and `max_length`) and (c) the dtype. A second run with the same reference and data
reads the file instead of running the reference model; changed data or weights miss the cache.

The cache lives outside the run dir and outlives it, so an entry is never trusted blindly: each
file carries in its safetensors metadata the key, the shape, the dtype and a SHA-256 of the
tensor's bytes, and is read back only when all of them match (and every value is finite).
Anything else (a truncated or foreign file, a wrong shape, edited values) is logged, recomputed
and rewritten atomically (temporary name, then rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from accelerate.utils import broadcast
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from podium.errors import PodiumError
from podium.training.logps import pack_pairs, sequence_logps

log = logging.getLogger("podium")


def default_cache_dir() -> Path:
    root = os.environ.get("PODIUM_CACHE") or Path.home() / ".cache" / "podium"
    return Path(root) / "ref_logps"


def weights_hash(model, skip_adapters: bool = False) -> str:
    """Checksum of a model's tensors (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if skip_adapters and "lora_" in name:
            continue
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_hash(examples: list[dict]) -> str:
    """Checksum of the tokenised pairs (ids only: what the reference forward sees)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]]).encode())
    return h.hexdigest()


def cache_key(ref_weights_hash: str, examples: list[dict], dtype: str) -> str:
    payload = json.dumps({"weights": ref_weights_hash, "data": data_hash(examples), "dtype": dtype, "v": 1})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@torch.no_grad()
def compute_reference_logps(model, examples: list[dict], pad_token_id: int, *, batch_size: int = 8,
                            prefix_sharing: bool = True, padding_free: bool = False,
                            adapter_disabled: bool = False) -> torch.Tensor:
    """Reference log-probs `[N, 2]` (chosen, rejected) of every example, in `examples` order."""
    was_training = model.training
    model.eval()
    ctx = model.disable_adapter() if adapter_disabled else contextlib.nullcontext()
    out = []
    with ctx:
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = pack_pairs(chunk, pad_token_id, prefix_sharing=prefix_sharing, padding_free=padding_free)
            logps, _ = sequence_logps(model, batch)
            out.append(torch.stack(logps.float().cpu().split(len(chunk)), dim=1))
    model.train(was_training)
    return torch.cat(out)


def cached_reference_logps(model, examples: list[dict], pad_token_id: int, *, cache_dir: str | Path | None = None,
                           adapter_disabled: bool = False, **kwargs) -> tuple[torch.Tensor, bool]:
    """Reference log-probs `[N, 2]` from the disk cache, computing and storing them on a miss.

    Returns `(logps, hit)`. A cache entry that fails verification (`read_entry`) counts as a miss.
    Under accelerate only the main process computes and writes; the others wait and read the file.
    """
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    key = cache_key(weights_hash(model, skip_adapters=adapter_disabled), examples, dtype)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"
    shape = (len(examples), 2)
    state = _partial_state()
    logps, hit = None, False
    if state is None or state.is_main_process:
        logps, problem = read_entry(path, key, shape)
        hit = logps is not None
        if problem:
            log.warning("reference log-prob cache entry %s is not usable (%s); recomputing it", path, problem)
        if not hit:
            logps = compute_reference_logps(model, examples, pad_token_id, adapter_disabled=adapter_disabled, **kwargs)
            write_entry(path, key, logps)
            log.info("reference log-probs computed for %d pairs, cached at %s", len(examples), path)
    if state is not None:
        hit = main_process_value(state, hit)
        state.wait_for_everyone()
        if not state.is_main_process:
            logps, problem = read_entry(path, key, shape)
            if logps is None:
                raise PodiumError(f"reference log-prob cache {path}: {problem or 'missing'} after the main "
                                  "process wrote it")
    if hit:
        log.info("reference log-probs read from cache %s", path)
    return logps, hit


def checksum(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def write_entry(path: Path, key: str, logps: torch.Tensor) -> None:
    """Store `logps` `[N, 2]` with its key, shape, dtype and checksum; atomic (temporary name, then rename)."""
    logps = logps.detach().to("cpu", torch.float32).contiguous()
    meta = {"format": "podium-reference-logps", "version": "1", "key": key,
            "shape": json.dumps(list(logps.shape)), "dtype": "float32", "sha256": checksum(logps)}
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
    if not bool(torch.isfinite(logps).all()):
        return None, "non-finite values"
    return logps, None


def main_process_value(state, value: bool) -> bool:
    """The main process's `value` on every process, so all agree on hit or miss (a tensor, not a pickle)."""
    return bool(broadcast(torch.tensor([int(value)], device=state.device), from_process=0).item())


def _partial_state():
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover
        return None
    # Without CUDA (or with ACCELERATE_USE_CPU) the processes talk over gloo; PartialState only picks
    # MULTI_CPU when told cpu=True, and it is a singleton the loop's Accelerator then shares.
    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=cpu)
    return state if state.num_processes > 1 else None
