"""Reference log-probs, computed once before training and cached on disk.

The cache key is a hash of (a) the reference weights (a checksum of every tensor the reference
forward uses; LoRA adapter tensors are left out when the reference is the adapter-disabled
model), (b) the tokenised data (token ids of every kept pair, which also covers the tokenizer,
chat template and `max_length`) and (c) the dtype. A second run with the same reference and data
reads the file instead of running the reference model; changed data or weights miss the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

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

    Returns `(logps, hit)`. Under accelerate only the main process computes and writes; the others
    wait and read the file.
    """
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    key = cache_key(weights_hash(model, skip_adapters=adapter_disabled), examples, dtype)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"
    state = _partial_state()
    hit = path.exists()
    if not hit and (state is None or state.is_main_process):
        logps = compute_reference_logps(model, examples, pad_token_id, adapter_disabled=adapter_disabled, **kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"reference_logps": logps.contiguous()}, str(tmp))
        os.replace(tmp, path)
        log.info("reference log-probs computed for %d pairs, cached at %s", len(examples), path)
    if state is not None:
        state.wait_for_everyone()
    logps = load_file(str(path))["reference_logps"]
    if hit:
        log.info("reference log-probs read from cache %s", path)
    return logps, hit


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
