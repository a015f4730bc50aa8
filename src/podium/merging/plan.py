"""Planning a merge: every output tensor with its inputs, parameters, shape and dtype, from headers only.

Every config mistake (missing tensor, shape or architecture mismatch, out-of-range layers, a bad
parameter) surfaces here, before any weight is read. Output order follows mergekit: embeddings,
then the layers slice by slice, then the final norm and head. A gradient parameter is evaluated at
t = offset / (n − 1) for the offset-th of a slice's n layers; tensors outside the layers use t = 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from podium.errors import PodiumError
from podium.merging.config import InputModel, MergeConfig, OutputSlice
from podium.merging.parameters import resolve_tensor_parameters
from podium.merging.reader import ModelSource
from podium.models.dtypes import DTYPES, nbytes

LAYER = re.compile(r"^(?P<prefix>.*?layers)\.(?P<idx>\d+)\.(?P<rest>.+)$")


@dataclass(frozen=True)
class TensorTask:
    """One output tensor: where its inputs come from and how to merge them."""

    out_name: str
    inputs: tuple[tuple[ModelSource, str], ...]
    base_index: int | None
    shared: dict
    per_input: list[dict]
    shape: tuple[int, ...]
    out_dtype: torch.dtype
    in_dtype: torch.dtype | None

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.out_dtype)

    @property
    def input_nbytes(self) -> int:
        return sum(nbytes(m.meta[n][0], m.meta[n][1]) for m, n in self.inputs)


@dataclass
class MergePlan:
    tasks: list[TensorTask]
    num_layers: int
    layer_sources: list[tuple[ModelSource, int]]  # (model, its layer) for each output layer
    base: ModelSource
    models: dict[str, ModelSource]


def plan_merge(cfg: MergeConfig, models: dict[str, ModelSource]) -> MergePlan:
    """Resolve every output tensor of `cfg` over the opened input `models` (ref -> source)."""
    check_same_architecture(models)
    slices = output_slices(cfg, models)
    bases = [slice_base_index(cfg, i, sl) for i, sl in enumerate(slices)]
    check_layer_ranges(slices, models)
    base = models[cfg.base_model or cfg.referenced_models()[0]]
    layers = {ref: index_layers(m) for ref, m in models.items()}
    embeddings, head = non_layer_names(base)

    tasks = non_layer_tasks(cfg, models, embeddings, slices[0], bases[0])
    layer_sources: list[tuple[ModelSource, int]] = []
    for sl, base_index in zip(slices, bases):
        first = sl.sources[0]
        n = first.layer_range[1] - first.layer_range[0]
        for offset in range(n):
            t = offset / (n - 1) if n > 1 else 1.0
            tasks += layer_tasks(cfg, models, layers, sl, base_index, offset, len(layer_sources), t)
            layer_sources.append((models[first.model], first.layer_range[0] + offset))
    tasks += non_layer_tasks(cfg, models, head, slices[-1], bases[-1])
    return MergePlan(tasks, len(layer_sources), layer_sources, base, models)


def check_same_architecture(models: dict[str, ModelSource]) -> None:
    archs = {ref: tuple(m.config.get("architectures") or [m.config.get("model_type")]) for ref, m in models.items()}
    if len(set(archs.values())) > 1:
        detail = "; ".join(f"{r}: {', '.join(map(str, a))}" for r, a in archs.items())
        raise PodiumError(f"models have different architectures ({detail})")


def output_slices(cfg: MergeConfig, models: dict[str, ModelSource]) -> list[OutputSlice]:
    """The config's slices; a `models:` config is one slice over every layer of each model (plus the base)."""
    if cfg.slices is not None:
        return cfg.slices
    sources = [InputModel(s.model, (0, models[s.model].num_layers), s.parameters) for s in cfg.models]
    if cfg.base_model and cfg.base_model not in [s.model for s in sources]:
        sources.append(InputModel(cfg.base_model, (0, models[cfg.base_model].num_layers), None))
    return [OutputSlice(sources)]


def slice_base_index(cfg: MergeConfig, i: int, sl: OutputSlice) -> int | None:
    """Index of the slice's base model among its sources; checks the method's input count."""
    spec = cfg.method
    ref = sl.base_model or cfg.base_model
    idx = [j for j, s in enumerate(sl.sources) if s.model == ref]
    if spec.base_required and not idx:
        raise PodiumError(f"slices[{i}]: merge method {spec.name!r} needs base_model among the slice's sources"
                          f" (base_model: {ref})")
    n = len(sl.sources)
    if n < spec.min_inputs or (spec.max_inputs and n > spec.max_inputs):
        hi = spec.max_inputs or "any"
        raise PodiumError(f"slices[{i}]: merge method {spec.name!r} takes {spec.min_inputs}..{hi} inputs, got {n}")
    return idx[0] if idx else None


def check_layer_ranges(slices: list[OutputSlice], models: dict[str, ModelSource]) -> None:
    for i, sl in enumerate(slices):
        for s in sl.sources:
            n = models[s.model].num_layers
            if s.layer_range[1] > n:
                raise PodiumError(f"slices[{i}]: layer_range {list(s.layer_range)} is out of bounds for model "
                                  f"{s.model}, which has {n} layers")


def index_layers(model: ModelSource) -> dict[int, tuple[str, list[str]]]:
    """layer index -> (name prefix, e.g. `model.layers`, and the tensor names after `prefix.i.`)."""
    out: dict[int, tuple[str, list[str]]] = {}
    for name in model.index:
        m = LAYER.match(name)
        if m:
            out.setdefault(int(m["idx"]), (m["prefix"], []))[1].append(m["rest"])
    return out


def non_layer_names(model: ModelSource) -> tuple[list[str], list[str]]:
    """Tensors outside the layers: (embeddings, everything else: final norm, head)."""
    names = [n for n in model.index if not LAYER.match(n)]
    embeddings = [n for n in names if "embed" in n or n.endswith(("wte.weight", "wpe.weight"))]
    return embeddings, [n for n in names if n not in embeddings]


def non_layer_tasks(cfg: MergeConfig, models: dict[str, ModelSource], names: list[str], sl: OutputSlice,
                    base_index: int | None) -> list[TensorTask]:
    return [tensor_task(cfg, models, name, sl.sources, [name] * len(sl.sources), base_index, sl.parameters, 0.0)
            for name in names if any(name in models[s.model].index for s in sl.sources)]


def layer_tasks(cfg: MergeConfig, models: dict[str, ModelSource], layers: dict, sl: OutputSlice,
                base_index: int | None, offset: int, out_layer: int, t: float) -> list[TensorTask]:
    """The tensors of output layer `out_layer`: layer `start + offset` of each of the slice's sources."""
    first = sl.sources[0]
    at = [s.layer_range[0] + offset for s in sl.sources]
    if at[0] not in layers[first.model]:
        raise PodiumError(f"model {first.model}: no tensors for layer {at[0]}")
    prefix, rests = layers[first.model][at[0]]
    for s, layer in zip(sl.sources[1:], at[1:]):
        other_prefix, other = layers[s.model].get(layer, (prefix, []))
        extra = sorted(set(other) - set(rests))
        if extra:
            raise PodiumError(f"model {s.model}: tensor {other_prefix}.{layer}.{extra[0]} has no counterpart in "
                              f"model {first.model}")
    return [tensor_task(cfg, models, f"{prefix}.{out_layer}.{rest}", sl.sources,
                        [f"{prefix}.{layer}.{rest}" for layer in at], base_index, sl.parameters, t)
            for rest in rests]


def tensor_task(cfg: MergeConfig, models: dict[str, ModelSource], out_name: str, sources: list[InputModel],
                in_names: list[str], base_index: int | None, slice_params: dict | None, t: float) -> TensorTask:
    """One output tensor: checks its inputs exist with one shape, resolves parameters and dtypes."""
    inputs, shape, first = [], None, None
    for s, name in zip(sources, in_names):
        m = models[s.model]
        if name not in m.meta:
            raise PodiumError(f"model {s.model}: missing tensor {name} (needed for output {out_name})")
        sh = m.meta[name][0]
        if shape is None:
            shape, first = sh, s.model
        elif sh != shape:
            raise PodiumError(f"tensor {name}: shape {list(sh)} in model {s.model} does not match "
                              f"{list(shape)} in model {first}")
        inputs.append((m, name))
    shared, per_input = resolve_tensor_parameters(cfg.method, cfg, slice_params, sources, base_index, out_name,
                                                  list(in_names), t)
    in_dtype = DTYPES[cfg.dtype] if cfg.dtype else None
    # without a `dtype:`, the result keeps the dtype of the base (linear: of the first input)
    keep = inputs[base_index if base_index is not None and cfg.method.name != "linear" else 0]
    result_dtype = in_dtype or keep[0].meta[keep[1]][1]
    out_dtype = DTYPES[cfg.out_dtype] if cfg.out_dtype else result_dtype
    return TensorTask(out_name, tuple(inputs), base_index, shared, per_input, shape, out_dtype, in_dtype)
