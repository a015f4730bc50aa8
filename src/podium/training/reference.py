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

On several processes (a distributed stage, podium.distributed) the pass is split: pair i is scored
by rank i % world, the rows are gathered on every rank in pair order, and the main process writes
the entry; the main process alone decides hit or miss. Under DDP each rank scores its share with its
own copy of the weights (`cached_reference_logps`). Under FSDP (podium's FSDP2, as the loop trains) or DeepSpeed
ZeRO-3 no rank holds the whole model: the reference is loaded and sharded for inference, every rank runs the same number of
forwards (a rank with fewer pairs repeats one and discards it, since each forward gathers the
layers from every rank), and the key hashes the reference's weight files
(`sharded_reference_logps`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from huggingface_hub import snapshot_download
from safetensors import safe_open

from podium.distributed.fsdp import accelerate_settings as accelerate_fsdp_settings
from podium.distributed.fsdp import env_settings as fsdp_env_settings
from podium.distributed.fsdp import shard_model
from podium.distributed.world import World, all_gather_json, current_world, device, gather_shard_rows, process_state
from podium.errors import PodiumError
from podium.training.logps import sequence_logps
from podium.training.pair_layout import pack_pairs
from podium.training.reference_cache import default_cache_dir, read_entry, write_entry

log = logging.getLogger("podium")


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


# The version of how entries are computed: 2 since prefix sharing runs the last prompt token in the completion
# rows (training/logps.py), which moves log-probs at float rounding; a cached entry reproduces a cold run's.
CACHE_VERSION = 2


def cache_key(ref_weights_hash: str, examples: list[dict], dtype: str) -> str:
    payload = json.dumps({"weights": ref_weights_hash, "data": data_hash(examples), "dtype": dtype,
                          "v": CACHE_VERSION})
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
            batch = {k: v.to(model_device(model)) if torch.is_tensor(v) else v for k, v in batch.items()}
            logps, _ = sequence_logps(model, batch)
            out.append(torch.stack(logps.float().cpu().split(len(chunk)), dim=1))
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, 2))


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def split_pass(model, examples: list[dict], pad_token_id: int, world: World, *, equal_forwards: bool = False,
               **kwargs) -> torch.Tensor:
    """Pair i scored by rank i % world, rows gathered on every rank in pair order: `[N, 2]`.

    `equal_forwards` (sharded models, whose every forward gathers layers from all ranks): each rank's
    share is padded to ceil(N / world) pairs with copies of pair 0, so all run the same forwards;
    the padding's rows are dropped.
    """
    mine = [examples[i] for i in world.shard(len(examples))]
    if equal_forwards:
        mine += [examples[0]] * (math.ceil(len(examples) / world.size) - len(mine))
    part = compute_reference_logps(model, mine, pad_token_id, **kwargs)
    return gather_shard_rows(part[: len(world.shard(len(examples)))], len(examples), world)


def cached_reference_logps(model, examples: list[dict], pad_token_id: int, *, cache_dir: str | Path | None = None,
                           adapter_disabled: bool = False, **kwargs) -> tuple[torch.Tensor, bool]:
    """Reference log-probs `[N, 2]` from the disk cache, computing and storing them on a miss.

    Returns `(logps, hit)`. A cache entry that fails verification (`read_entry`) counts as a miss.
    On several processes (DDP: every rank holds the weights) the pass is split across the ranks and
    gathered; the main process reads and writes the cache, the others read it after a hit.
    """
    world = current_world()
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    key = cache_key(weights_hash(model, skip_adapters=adapter_disabled), examples, dtype)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"

    def compute():
        if world.size == 1:
            return compute_reference_logps(model, examples, pad_token_id, adapter_disabled=adapter_disabled, **kwargs)
        model.to(device())  # the pass runs where the loop will train (each rank's GPU)
        return split_pass(model, examples, pad_token_id, world, adapter_disabled=adapter_disabled, **kwargs)

    return cached_pass(path, key, len(examples), world, compute)


def cached_pass(path: Path, key: str, n: int, world: World, compute) -> tuple[torch.Tensor, bool]:
    """The cache entry at `path` when it verifies, else `compute()` (run on every rank) stored there."""
    shape = (n, 2)
    logps, hit = None, False
    if world.is_main:
        logps, problem = read_entry(path, key, shape)
        hit = logps is not None
        if problem:
            log.warning("reference log-prob cache entry %s is not usable (%s); recomputing it", path, problem)
    if world.size > 1:
        hit = main_process_value(process_state(), hit)
    if not hit:
        logps = compute()
        if world.is_main:
            write_entry(path, key, logps)
            log.info("reference log-probs computed for %d pairs%s, cached at %s", n,
                     f" on {world.size} processes" if world.size > 1 else "", path)
    elif logps is None:
        logps, problem = read_entry(path, key, shape)
        if logps is None:
            raise PodiumError(f"reference log-prob cache {path}: {problem or 'missing'} after the main process read it")
    if hit and world.is_main:
        log.info("reference log-probs read from cache %s", path)
    world.barrier()  # the entry is written before any rank goes on
    return logps, hit


def sharded_training() -> bool:
    """Whether this launch shards the weights (podium's or accelerate's FSDP, or DeepSpeed ZeRO stage 3): no rank
    holds a whole model."""
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or fsdp_env_settings() is not None
    zero3 = env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and env.get(
        "ACCELERATE_DEEPSPEED_ZERO_STAGE", "") == "3"
    return (fsdp or zero3) and current_world().size > 1


def files_hash(model: str | Path) -> str:
    """Checksum of a model's safetensors tensors (names, shapes, dtypes and bytes), read one at a time.

    `model` is a local folder or a Hub id (its safetensors files are fetched into the Hub cache).
    """
    h = hashlib.sha256()
    folder = Path(model) if Path(model).is_dir() else Path(snapshot_download(str(model), allow_patterns=["*.safetensors"]))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise PodiumError(f"{folder}: no safetensors weights to key the reference cache with")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in sorted(st.keys()):
                t = st.get_tensor(name)
                h.update(f"{f.name}/{name}:{tuple(t.shape)}:{t.dtype}".encode())
                h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def prepare_for_inference(load_model):
    """`load_model()` sharded for inference the way the launch trains: FSDP wrapping, or a DeepSpeed ZeRO-3
    engine without optimizer (as TRL prepares its reference model). The Accelerator comes first, so
    ZeRO-3 (zero3_init_flag) loads the weights partitioned."""
    acc = Accelerator()
    model = load_model()
    kind = getattr(acc.distributed_type, "value", str(acc.distributed_type))
    for p in model.parameters():
        p.requires_grad_(False)
    if (fsdp := fsdp_env_settings() or accelerate_fsdp_settings(acc)) is not None:  # podium's FSDP2, as the loop trains
        return shard_model(model, fsdp, acc.device, training=False).eval()
    if kind == "DEEPSPEED":
        import deepspeed  # optional extra (podium[gpu]); present whenever a ZeRO-3 launch got this far

        config = copy.deepcopy(acc.state.deepspeed_plugin.deepspeed_config)
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        config["zero_optimization"].pop("offload_optimizer", None)
        engine, *_ = deepspeed.initialize(model=model, config=config)
        engine.eval()
        return engine
    return acc.prepare_model(model).eval()


def sharded_reference_logps(load_reference, weights: str | Path, examples: list[dict], pad_token_id: int, *,
                            dtype: str, cache_dir: str | Path | None = None, batch_size: int = 8,
                            **kwargs) -> tuple[torch.Tensor, bool]:
    """Reference log-probs `[N, 2]` under FSDP / ZeRO-3: `load_reference()` is sharded for inference and
    every rank scores its share of the pairs with the same number of forwards; cached like
    `cached_reference_logps`, keyed by the weight files of `weights` (a folder or Hub id; the main process hashes them).
    """
    world = current_world()
    key = None
    if world.is_main:
        key = cache_key(files_hash(weights), examples, dtype)
    key = all_gather_json(key, world)[0]
    path = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"

    def compute():
        model = prepare_for_inference(load_reference)
        try:
            return split_pass(model, examples, pad_token_id, world, equal_forwards=True, batch_size=batch_size,
                              **kwargs)
        finally:
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    return cached_pass(path, key, len(examples), world, compute)


def main_process_value(state, value: bool) -> bool:
    """The main process's `value` on every process, so all agree on hit or miss (a tensor, not a pickle)."""
    return bool(broadcast(torch.tensor([int(value)], device=state.device), from_process=0).item())
