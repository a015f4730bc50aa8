"""Which stored tensors feed each parameter of a model built for rank-local loading: one tensor as stored or
renamed (`Direct`), or per-expert tensors that transformers 5 fuses on load (`Experts`); `plan_sources`.
Part of FSDP2's rank-local loading (`podium.distributed.fsdp_load`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from podium.distributed.weight_files import WeightFiles
from podium.errors import PodiumError

try:  # transformers 5 converts some checkpoint layouts on load (Mixtral's per-expert tensors into fused ones)
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
except ImportError:  # transformers 4 loads checkpoints as stored
    get_model_conversion_mapping = None





# --- model parameter -> file tensors --------------------------------------------------------------------

@dataclass(frozen=True)
class Direct:
    """A parameter stored as one file tensor of the same shape."""

    key: str

    def shape(self, files: WeightFiles) -> tuple[int, ...]:
        return files.shape(self.key)

    def read(self, files: WeightFiles, start: int | None, stop: int | None) -> torch.Tensor:
        return files.rows(self.key, start, stop)


@dataclass(frozen=True)
class Experts:
    """A fused experts parameter `[E, ...]` whose row e is `cat([groups[0][e], groups[1][e], ...], dim=0)`:
    transformers' MergeModulelist(dim=0) over each group of per-expert tensors, then Concatenate(dim=1)."""

    groups: tuple[tuple[str, ...], ...]  # one tuple of file keys per source pattern, in expert order

    def shape(self, files: WeightFiles) -> tuple[int, ...]:
        parts = [files.shape(g[0]) for g in self.groups]
        return (len(self.groups[0]), sum(p[0] for p in parts), *parts[0][1:])

    def read(self, files: WeightFiles, start: int | None, stop: int | None) -> torch.Tensor:
        start, stop = (0, len(self.groups[0])) if start is None else (start, stop)
        rows = [torch.cat([files.rows(g[e]) for g in self.groups], dim=0) for e in range(start, stop)]
        if rows:
            return torch.stack(rows)
        return torch.empty((0, *self.shape(files)[1:]), dtype=files.rows(self.groups[0][0], 0, 0).dtype)


def conversions(model) -> tuple[list, list]:
    """transformers' (renamings, converters) of `model`'s checkpoint layout (empty lists when this transformers
    has none)."""
    if get_model_conversion_mapping is None:
        return [], []
    transforms = get_model_conversion_mapping(model)
    return ([t for t in transforms if isinstance(t, WeightRenaming)],
            [t for t in transforms if isinstance(t, WeightConverter)])


def _op_names(converter) -> list[tuple[str, int]]:
    return [(type(op).__name__, getattr(op, "dim", None)) for op in converter.operations]


def plan_sources(model, files: WeightFiles) -> dict[str, Direct | Experts]:
    """For each parameter or buffer name of `model`'s state dict that the files hold: where its values are (names
    as the unwrapped model has them: a LoRA-wrapped layer's `.base_layer.` dropped)."""
    names = {unwrapped_name(k) for k in model.state_dict().keys()}
    renamings, converters = conversions(model)
    plan: dict[str, Direct | Experts] = {}
    grouped: dict[str, dict[str, dict[int, str]]] = {}  # target -> source pattern -> expert -> file key
    by_pattern = {}
    for key in files.keys():
        if not (renamings or converters):
            target, pattern = key, None
        else:
            target, pattern = rename_source_key(key, renamings, converters, model.base_model_prefix,
                                                dict.fromkeys(names, True))
        if pattern is None:
            target = _with_prefix(target, names, model.base_model_prefix)
            if target in names:
                plan[target] = Direct(key)
            continue
        converter = next(c for c in converters if pattern in c.source_patterns)
        by_pattern[pattern] = converter
        index = _expert_index(key, pattern)
        grouped.setdefault(target, {}).setdefault(pattern, {})[index] = key
    for target, patterns in grouped.items():
        converter = by_pattern[next(iter(patterns))]
        ops = _op_names(converter)
        if ops not in ([("MergeModulelist", 0)], [("MergeModulelist", 0), ("Concatenate", 1)]):
            raise PodiumError(f"rank-local loading: {model.config.model_type} checkpoints convert {target!r} with "
                              f"{ops}, which podium cannot read by rows; set `launch: {{fsdp: {{rank_local_load: false}}}}` "
                              "to load whole models")
        ordered = []
        for pattern in converter.source_patterns:
            experts = patterns.get(pattern, {})
            if sorted(experts) != list(range(len(experts))) or not experts:
                raise PodiumError(f"{files.folder}: experts of {target!r} under {pattern!r} are {sorted(experts)}, "
                                  "expected 0..E-1")
            ordered.append(tuple(experts[e] for e in range(len(experts))))
        if len({len(g) for g in ordered}) != 1:
            raise PodiumError(f"{files.folder}: {target!r} has unequal expert counts per source ({[len(g) for g in ordered]})")
        if target in names:
            plan[target] = Experts(tuple(ordered))
    return plan


def _with_prefix(key: str, names: set[str], prefix: str) -> str:
    """A file key as the model names it: with or without the base model's prefix (a bare `LlamaModel`'s files
    loaded into `LlamaForCausalLM`, or the other way round), as transformers allows."""
    if key in names or not prefix:
        return key
    if f"{prefix}.{key}" in names:
        return f"{prefix}.{key}"
    if key.startswith(prefix + ".") and key[len(prefix) + 1:] in names:
        return key[len(prefix) + 1:]
    return key


def _expert_index(key: str, pattern: str) -> int:
    regex = re.escape(pattern).replace(r"\*", r"(\d+)")
    found = re.search(regex, key)
    if found is None or not found.groups():
        raise PodiumError(f"rank-local loading: cannot read the expert index of {key!r} (pattern {pattern!r})")
    return int(found.group(1))


def unwrapped_name(name: str) -> str:
    """A parameter's name without peft's `.base_layer` wrappers (nested ones too: LoRA on Mixtral's experts)."""
    return re.sub(r"(\.base_layer)+\.", ".", name)
