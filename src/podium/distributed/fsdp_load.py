"""Rank-local loading under FSDP2: no rank ever holds the whole model, not even while loading it.

A full load (`from_pretrained` on every rank, then `fully_shard`) needs the whole model in each process's host
memory first: 8 x 144 GB for a 72B model in bf16 on one 8-GPU machine. Here instead:

1. `empty_model`: the model is built from its config.json with its parameters on the meta device (shapes only,
   no memory); its buffers (rotary `inv_freq`, Gemma's `embed_scale`) are computed on the host by the modules'
   own `__init__`, as a full load computes them; tied weights are tied (`tie_weights`). The weight files travel
   with the model (`SOURCE_ATTR`).
2. `podium.distributed.fsdp.shard_model` applies `fully_shard` per decoder layer, then the root: the parameters
   become meta `DTensor`s sharded on dim 0.
3. `materialise`: `to_empty` gives each rank empty local shards; each rank then reads only its own rows of each
   tensor from the safetensors files (the bytes of rows [start, stop), through `model.safetensors.index.json` for
   sharded Hub layouts) and copies them into `to_local()`. Tensors that were
   real before (buffers, LoRA adapters peft initialised on the host) keep their values.

Peak host memory per rank is its shard plus one tensor's rows, not the model (on GPUs: one tensor's rows).
Checkpoint layouts transformers converts on load (Mixtral's per-expert `w1`/`w2`/`w3` into fused
`gate_up_proj` / `down_proj`) are read the same way: the rows of expert e of a fused tensor are expert e's
files, concatenated as transformers' `MergeModulelist` + `Concatenate` do; a conversion podium does not know is a
PodiumError that names it (`launch: {fsdp: {rank_local_load: false}}` loads whole models instead).

FSDP2's `Shard(0)` gives rank r the rows [r*c, min((r+1)*c, n)) with c = ceil(n / W) (`torch.chunk`); the slice
each rank reads is that range (`shard_rows`), checked against the local shard's shape.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub import errors as hub_errors
from torch.distributed.tensor import DTensor
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

from podium.distributed.weight_files import WeightFiles, local_rows
from podium.distributed.weight_sources import plan_sources, unwrapped_name
from podium.errors import PodiumError

# What reading a model folder's config raises for a bad config.json (huggingface_hub's strict config validation too).
CONFIG_ERRORS = (OSError, ValueError, getattr(hub_errors, "StrictDataclassError", ValueError))

log = logging.getLogger("podium")

SOURCE_ATTR = "_podium_rank_local_source"  # set on the transformers model by `empty_model`


# --- building empty, materialising shards ----------------------------------------------------------------

@contextmanager
def parameters_on_meta():
    """Modules built inside hold their parameters on the meta device (shapes, no memory); their buffers stay real,
    computed by each module's own init (rotary `inv_freq` from the config, Gemma's `embed_scale`). Each parameter is
    swapped for a meta one as it is registered, before its module initialises it (which then costs nothing)."""
    original = torch.nn.Module.register_parameter

    def register(module, name, param):
        original(module, name, param)
        p = module._parameters.get(name)
        if p is not None and not p.is_meta:
            module._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def empty_model(folder: str | os.PathLike, *, dtype: torch.dtype, attn: dict, trust_remote_code: bool = False):
    """The causal LM of model folder `folder`, parameters on the meta device, buffers computed on the host by the
    modules' own init, weights tied as its config says, its generation config read; the weight files attached
    for `materialise`."""
    folder = Path(folder)
    files = WeightFiles.of(folder)
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        with parameters_on_meta():
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code, **attn)
    # As load_model reports them: the user's folder, so one line instead of a traceback.
    except CONFIG_ERRORS as e:
        text = " ".join(str(e).split())[:400] or type(e).__name__
        raise PodiumError(f"could not load model {str(folder)!r}: {text}") from None
    model.tie_weights()  # re-registered parameters: the tie made during construction is to be made again
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    model.name_or_path = str(folder)
    model.eval()  # as from_pretrained returns it
    setattr(model, SOURCE_ATTR, files)
    return model


def is_empty(model: torch.nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def source_model(model: torch.nn.Module):
    """The transformers model inside `model` (peft, a head) that `empty_model` built, or None."""
    # vars(), not getattr: peft's wrappers forward unknown attributes to the model they wrap
    return next((m for m in model.modules() if vars(m).get(SOURCE_ATTR) is not None), None)


def _names_in(root: torch.nn.Module, inner: torch.nn.Module) -> dict[int, list[str]]:
    """id(tensor) -> every name `inner`'s state dict would give it, from `root`'s parameters and buffers (peft's
    `.base_layer.` dropped, so a LoRA-wrapped layer's base weight has its file name)."""
    prefix = next(name for name, m in root.named_modules() if m is inner)
    prefix = prefix + "." if prefix else ""
    out: dict[int, list[str]] = {}
    for name, t in [*root.named_parameters(remove_duplicate=False), *root.named_buffers(remove_duplicate=False)]:
        if name.startswith(prefix):
            out.setdefault(id(t), []).append(unwrapped_name(name[len(prefix):]))
    return out


@torch.no_grad()
def materialise(model: torch.nn.Module, device: torch.device, *, offload: bool = False) -> dict[str, int]:
    """Fill the meta shards of a `fully_shard`ed `model` from its weight files, each rank reading its own rows
    (see the module doc). `offload`: FSDP2's CPU offload keeps the sharded parameters in host memory.

    Returns {"tensors": loaded, "bytes_read": bytes this rank read}."""
    inner = source_model(model)
    if inner is None:
        raise PodiumError("rank-local loading: the model carries no weight files (build it with empty_model)")
    files: WeightFiles = vars(inner)[SOURCE_ATTR]
    plan = plan_sources(inner, files)
    # Tensors already real (buffers from the modules' init, LoRA adapters) keep their values across to_empty.
    kept = {name: _local(p).detach().clone() for name, p in model.named_parameters() if not p.is_meta}
    kept_buffers = [(m, n, b) for m in model.modules() for n, b in m._buffers.items() if b is not None and not b.is_meta]
    tied = _tied_places(model)
    model.to_empty(device="cpu" if offload else device)
    for m, n, b in kept_buffers:
        m._buffers[n] = b
    for places in tied:  # to_empty of a plain (unsharded) module makes a new parameter per place: tie them again
        first = _param_at(model, places[0])
        for mod_name, p_name in places[1:]:
            model.get_submodule(mod_name)._parameters[p_name] = first
    names = _names_in(model, inner)
    loaded = 0
    with files:
        for name, p in model.named_parameters():  # each shared parameter once
            if name in kept:
                _local(p).copy_(kept.pop(name))
                continue
            aliases = names[id(p)]
            source = next((plan[a] for a in aliases if a in plan), None)
            if source is None:
                raise PodiumError(f"{files.folder}: no tensor for parameter {aliases[0]} in its safetensors files (a "
                                  "model folder whose weights do not match its config.json?)")
            shape = source.shape(files)
            if tuple(shape) != tuple(p.shape):
                raise PodiumError(f"{files.folder}: {aliases[0]} has shape {tuple(shape)} in the files, the model built "
                                  f"from config.json expects {tuple(p.shape)}")
            rows = local_rows(p)
            piece = source.read(files, *(rows or (None, None)))
            if piece.is_floating_point() and not bool(torch.isfinite(piece).all()):  # as load_model's check_finite
                raise PodiumError(f"model {str(files.folder)!r}: weight {aliases[0]} holds NaN or infinite values")
            _local(p).copy_(piece)
            del piece
            loaded += 1
        for m in model.modules():  # persistent buffers the files hold load as from_pretrained loads them (whole)
            for n, b in m._buffers.items():
                if b is None or n in m._non_persistent_buffers_set:
                    continue
                source = next((plan[a] for a in names.get(id(b), []) if a in plan), None)
                if source is not None and tuple(source.shape(files)) == tuple(b.shape):
                    b.copy_(source.read(files, None, None))
                    loaded += 1
    delattr(inner, SOURCE_ATTR)
    return {"tensors": loaded, "bytes_read": files.bytes_read}


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _tied_places(model: torch.nn.Module) -> list[list[tuple[str, str]]]:
    """(module name, parameter name) of each parameter registered in more than one place (tied embeddings)."""
    owners: dict[int, list[tuple[str, str]]] = {}
    for mod_name, m in model.named_modules(remove_duplicate=False):
        for p_name, p in m._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((mod_name, p_name))
    return [list(dict.fromkeys(places)) for places in owners.values() if len(dict.fromkeys(places)) > 1]


def _param_at(model: torch.nn.Module, place: tuple[str, str]) -> torch.nn.Parameter:
    return model.get_submodule(place[0])._parameters[place[1]]


@contextmanager
def adapters_on_host(model: torch.nn.Module):
    """LoRA adapters on an empty (meta) model keep the initial values peft drew for them.

    peft initialises a new adapter on the host (LoRA A random, as a full load draws it: same generator, same
    order) and then moves it to its base layer's device, here the meta device, which drops the values. Inside this
    context each adapter's initial values are noted when peft initialises them and put back, in host memory and
    the adapter's dtype, when the context ends; `materialise` then keeps them as they are."""
    if not is_empty(model):
        yield
        return
    from peft.tuners.lora.layer import LoraLayer

    original = LoraLayer.reset_lora_parameters
    drawn: dict[tuple[int, str], dict[str, torch.Tensor]] = {}

    def reset_and_note(self, adapter_name, *args, **kwargs):
        out = original(self, adapter_name, *args, **kwargs)
        drawn[(id(self), adapter_name)] = {
            f"{attr}.{name}": p.detach().clone() for attr in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
            if adapter_name in (getattr(self, attr, None) or {})
            for name, p in _adapter_params(getattr(self, attr)[adapter_name])}
        return out

    LoraLayer.reset_lora_parameters = reset_and_note
    try:
        yield
    finally:
        LoraLayer.reset_lora_parameters = original
    for layer in model.modules():
        for (layer_id, adapter), values in list(drawn.items()):
            if layer_id != id(layer):
                continue
            for path, value in values.items():
                attr, name = path.split(".", 1)
                holder = getattr(layer, attr)
                _put_back(holder, adapter, name, value)


def _adapter_params(item) -> list[tuple[str, torch.Tensor]]:
    """(name, parameter) of one adapter entry: a module's parameters, or the entry itself (ParameterDict)."""
    if isinstance(item, torch.nn.Module):
        return list(item.named_parameters())
    return [("", item)]


def _put_back(holder, adapter: str, name: str, value: torch.Tensor) -> None:
    item = holder[adapter]
    if name == "":  # a ParameterDict entry
        if item.is_meta:
            holder[adapter] = torch.nn.Parameter(value.to(item.dtype), requires_grad=item.requires_grad)
        return
    module_path, _, pname = name.rpartition(".")
    module = item.get_submodule(module_path) if module_path else item
    p = module._parameters[pname]
    if p is not None and p.is_meta:
        module._parameters[pname] = torch.nn.Parameter(value.to(p.dtype), requires_grad=p.requires_grad)
