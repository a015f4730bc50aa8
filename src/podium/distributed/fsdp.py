"""FSDP2 applied by podium: `torch.distributed.fsdp.fully_shard` per decoder layer, then the root.

accelerate runs FSDP on GPUs only: on a CPU launch it silently falls back to replicated DDP. podium
shards the model itself instead, with PyTorch's own FSDP2, which runs on any device (gloo on CPU, NCCL
on GPUs), so a sharded run is the same code path here and on a GPU cluster:

    launch: {num_processes: 8, fsdp: true}                       # or fsdp: {cpu_offload: true, ...}
    launch: {config_file: ../configs/accelerate/fsdp.yaml}       # accelerate's FSDP section, read by podium

`podium run` passes the settings to the ranks in the environment (`PODIUM_FSDP`, JSON) and launches
them as plain multi-process ranks; `train_loop` then shards the model (`shard_model`) instead of letting
accelerate wrap it. Each decoder layer (the family's layer class, found from the model's
`_no_split_modules` as transformers declares it) is one FSDP unit, the root holds the embeddings, the
final norm and the LM head. Parameters, gradients and optimizer state are `DTensor`s sharded on dim 0
(rank r holds rows [r*c, min((r+1)*c, n)) with c = ceil(n / world)); a forward all-gathers one layer at
a time and the backward reduce-scatters its gradients, averaged over the ranks as DDP does.

Mixed precision is FSDP2's `MixedPrecisionPolicy` (bf16 compute and all-gathers, fp32 gradient
reduction, fp32 sharded master weights); CPU offload is its `CPUOffloadPolicy` (sharded parameters,
gradients and optimizer state in host memory, the optimizer step on CPU). LoRA works unchanged: frozen
base weights and trainable adapters share a unit (FSDP2 allows mixed `requires_grad`).

Loading is rank-local by default (`rank_local_load`, podium.distributed.fsdp_load): a model the stage loads for
training is built on the meta device, sharded, then each rank reads only its own rows of each tensor from the
safetensors files, so no process ever holds the whole model.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
from torch.distributed.tensor import DTensor

from podium.distributed.fsdp_load import is_empty, materialise
from podium.errors import PodiumError

log = logging.getLogger("podium")

ENV = "PODIUM_FSDP"


@dataclass(frozen=True)
class FSDPSettings:
    """How podium shards a training stage (from `launch: {fsdp: ...}` or an accelerate FSDP config)."""

    reshard_after_forward: bool = True  # free each layer's gathered weights after its forward (ZeRO-3); False: ZeRO-2-like
    cpu_offload: bool = False  # sharded parameters, gradients and optimizer state in host memory
    mixed_precision: str = "no"  # "no" or "bf16" (the launch's mixed_precision)
    activation_checkpointing: bool = False  # recompute each decoder layer in the backward
    rank_local_load: bool = True  # each rank reads only its shards from the weight files (fsdp_load); False: whole models

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, value: str) -> FSDPSettings:
        try:
            data = json.loads(value)
            return cls(**{k: data[k] for k in ("reshard_after_forward", "cpu_offload", "mixed_precision",
                                                "activation_checkpointing", "rank_local_load") if k in data})
        except (ValueError, TypeError) as e:
            raise PodiumError(f"{ENV}={value!r} is not a podium FSDP setting ({e})") from None


def env_settings() -> FSDPSettings | None:
    """The settings `podium run` gave this rank, or None (no FSDP)."""
    value = os.environ.get(ENV)
    return FSDPSettings.from_env(value) if value else None


def accelerate_settings(acc) -> FSDPSettings | None:
    """Settings of a launch that asked accelerate for FSDP itself (`accelerate launch --config_file fsdp.yaml
    -m podium.cli.train`): podium applies FSDP2 with the plugin's options instead of accelerate's wrapping."""
    if getattr(acc.distributed_type, "value", str(acc.distributed_type)) != "FSDP":
        return None
    plugin = acc.state.fsdp_plugin
    offload = getattr(plugin, "cpu_offload", None)
    offload = bool(getattr(offload, "offload_params", offload))
    return FSDPSettings(reshard_after_forward=bool(getattr(plugin, "reshard_after_forward", True) not in (False, "NO_SHARD",
                                                                                                          "SHARD_GRAD_OP")),
                        cpu_offload=offload, mixed_precision=str(acc.mixed_precision),
                        activation_checkpointing=bool(getattr(plugin, "activation_checkpointing", False)),
                        rank_local_load=bool(getattr(plugin, "cpu_ram_efficient_loading", True)))


def training_settings(acc) -> FSDPSettings | None:
    """FSDP settings of this run when it has 2+ processes (one process has nothing to shard), else None."""
    settings = env_settings() or accelerate_settings(acc)
    if settings is None or acc.num_processes < 2:
        return None
    if settings.mixed_precision not in ("no", "bf16"):
        raise PodiumError(f"FSDP2 under podium takes mixed_precision bf16 or no, got {settings.mixed_precision!r} "
                          "(fp16 needs loss scaling of sharded gradients, which podium does not do)")
    return settings


def rank_local_wanted() -> bool:
    """Whether a model loaded for training should be built empty and filled rank by rank after sharding
    (podium.distributed.fsdp_load): a launch of 2+ processes under podium's FSDP2 (unless `rank_local_load: false`) or
    under an accelerate FSDP config (unless its `fsdp_cpu_ram_efficient_loading` is false)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) < 2:
        return False
    settings = env_settings()
    if settings is not None:
        return settings.rank_local_load
    # accelerate's own FSDP launch: FSDP on GPUs only (on CPU accelerate runs it as DDP, and nothing would shard)
    return (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
            and os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "true").lower() in ("true", "1")
            and torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "0").lower() not in ("1", "true"))


def sharded_launch() -> bool:
    """Whether this launch asked for podium's FSDP2 (and has 2+ processes)."""
    return env_settings() is not None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


# --- applying FSDP2 --------------------------------------------------------------------------------

def no_split_names(model: torch.nn.Module) -> set[str]:
    """Class names of the model family's decoder layers (transformers' `_no_split_modules`, also on a
    model wrapped by peft or a preference head)."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    return names


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules each made one FSDP unit: instances of the family's decoder layer class."""
    names = no_split_names(model)
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise PodiumError(f"FSDP2: cannot find the decoder layers of {type(model).__name__} (no module of the "
                          f"classes its _no_split_modules name: {sorted(names) or 'none declared'})")
    return layers


def policies(settings: FSDPSettings) -> dict:
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if settings.mixed_precision == "bf16" else MixedPrecisionPolicy())
    offload = CPUOffloadPolicy() if settings.cpu_offload else OffloadPolicy()
    return {"mp_policy": mp, "offload_policy": offload}


def shard_model(model: torch.nn.Module, settings: FSDPSettings, device: torch.device, *,
                training: bool = True) -> torch.nn.Module:
    """`fully_shard` every decoder layer, then the root (in place; returns `model`).

    `device`: this rank's device (cpu under gloo); with CPU offload the sharded state stays in host memory
    and FSDP2 moves each gathered layer to the GPU. `training=False` (a frozen reference): every layer is
    resharded after its forward and activation checkpointing is off.
    """
    world = dist.get_world_size()
    mesh = init_device_mesh(device.type, (world,))
    if settings.cpu_offload and device.type == "cpu":
        # FSDP2's offload moves state between host and an accelerator; on CPU ranks it is in host memory already.
        log.info("FSDP2: cpu_offload has nothing to do on CPU processes (the sharded state is in host memory); off")
        settings = replace(settings, cpu_offload=False)
    empty = is_empty(model)  # built on the meta device for rank-local loading (fsdp_load.empty_model)
    if not settings.cpu_offload and not empty:
        model.to(device)
    if training and settings.activation_checkpointing:
        enable_gradient_checkpointing(model)
    kwargs = {"mesh": mesh, **policies(settings)}
    reshard = settings.reshard_after_forward or not training
    layers = decoder_layers(model)
    layer_class = type(layers[0]).__name__  # before fully_shard renames the class (FSDP<name>)
    for layer in layers:
        fully_shard(layer, reshard_after_forward=reshard, **kwargs)
    # The root's parameters (embeddings, norm, LM head) are needed again at once by the backward.
    fully_shard(model, reshard_after_forward=False if training else True, **kwargs)
    if empty:
        done = materialise(model, device, offload=settings.cpu_offload)
        log.info("FSDP2: rank-local load, %d tensors; this process read %.1f MiB of the weight files",
                 done["tensors"], done["bytes_read"] / 2**20)
    log.info("FSDP2: %d decoder layers (%s) and the root sharded over %d processes%s%s%s", len(layers),
             layer_class, world, ", bf16 compute" if settings.mixed_precision == "bf16" else "",
             ", CPU offload" if settings.cpu_offload else "",
             ", activation checkpointing" if training and settings.activation_checkpointing else "")
    return model


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """transformers' gradient checkpointing (non-reentrant, as FSDP2 and DDP need it), also through peft or a
    preference head's backbone."""
    target = next((m for m in model.modules() if hasattr(m, "gradient_checkpointing_enable")), None)
    if target is None:
        raise PodiumError(f"gradient checkpointing: {type(model).__name__} has no transformers model inside")
    target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@contextmanager
def gradient_sync(model: torch.nn.Module, sync: bool):
    """Micro-batches before the last of an optimizer step accumulate unreduced gradients (FSDP2's no_sync)."""
    if sync:
        yield
        return
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


# --- collectives on sharded tensors ----------------------------------------------------------------

def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a (possibly sharded) tensor."""
    return t.to_local() if isinstance(t, DTensor) else t


def clip_grad_norm(params, max_norm: float | None) -> float:
    """Global gradient norm over every rank's shards (clipped to `max_norm` when set)."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm or float("inf"))
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def sharded_weight_norm(params) -> float:
    """L2 norm of the whole (sharded) weights: local sums of squares, summed over the ranks."""
    params = list(params)
    if not params:
        return 0.0
    dev = local(params[0]).device
    total = torch.zeros((), dtype=torch.float64, device=dev)
    for p in params:
        total += local(p.detach()).double().pow(2).sum().to(dev)
    dist.all_reduce(total)
    return float(total.sqrt())


def full_state_dict(model: torch.nn.Module, main: bool) -> dict[str, torch.Tensor] | None:
    """The whole weights gathered tensor by tensor (every rank takes part); kept on CPU by the main process.

    A tied weight (an LM head sharing the embedding) is gathered and kept once, under its first name, as
    `save_pretrained` of an unsharded model writes it (loading ties it again)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    tied = set()  # the state dict gives each name its own tensor object: the parameters say which are one
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        seen.add(id(p))
    for name, t in model.state_dict().items():
        if name in tied:
            continue
        full = t.full_tensor() if isinstance(t, DTensor) else t
        if main:
            out[name] = full.detach().to("cpu")
    return out if main else None


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes this rank holds of parameters, gradients and optimizer state (local shards of DTensors)."""
    params = list(dict.fromkeys(model.parameters()))
    out = {"parameters": sum(local(p).numel() * local(p).element_size() for p in params),
           "gradients": sum(local(p.grad).numel() * local(p.grad).element_size() for p in params if p.grad is not None)}
    if optimizer is not None:
        out["optimizer"] = sum(local(v).numel() * local(v).element_size() for state in optimizer.state.values()
                               for v in state.values() if torch.is_tensor(v))
    return out
