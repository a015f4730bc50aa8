"""Rank-local loading under FSDP2: no rank ever holds the whole model, not even while loading it.

A full load (`from_pretrained` on every rank, then `fully_shard`) needs the whole model in each process's host
memory first: 8 x 144 GB for a 72B model in bf16 on one 8-GPU machine. Here instead:

1. `empty_model`: the model is built from its config.json with its parameters on the meta device (shapes only,
   no memory); its buffers (rotary `inv_freq`, Gemma's `embed_scale`) are computed on the host by the modules'
   own `__init__`, as a full load computes them; tied weights are tied (`tie_weights`). The weight files travel
   with the model (`SOURCE_ATTR`).
2. `podium.training.fsdp.shard_model` applies `fully_shard` per decoder layer, then the root: the parameters
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

import json
import logging
import os
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import errors as hub_errors
from torch.distributed.tensor import DTensor, Shard
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

from podium.errors import PodiumError

try:  # transformers 5 converts some checkpoint layouts on load (Mixtral's per-expert tensors into fused ones)
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
except ImportError:  # transformers 4 loads checkpoints as stored
    get_model_conversion_mapping = None

# What reading a model folder's config raises for a bad config.json (huggingface_hub's strict config validation too).
CONFIG_ERRORS = (OSError, ValueError, getattr(hub_errors, "StrictDataclassError", ValueError))

log = logging.getLogger("podium")

SOURCE_ATTR = "_podium_rank_local_source"  # set on the transformers model by `empty_model`
INDEX = "model.safetensors.index.json"


# --- which rows a rank holds ------------------------------------------------------------------------

def shard_rows(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [start, stop) of an n-row tensor that rank `rank` of `world` holds under FSDP2's Shard(0)
    (`torch.chunk` of n rows into `world` pieces: c = ceil(n / world) rows each, the last ones shorter or empty)."""
    if n == 0:
        return 0, 0
    c = -(-n // world)
    start = min(rank * c, n)
    return start, min(start + c, n)


def local_rows(t: torch.Tensor) -> tuple[int, int] | None:
    """The dim-0 rows this rank's shard of `t` covers; None for a tensor every rank holds whole."""
    if not isinstance(t, DTensor):
        return None
    if len(t.placements) != 1 or not isinstance(t.placements[0], Shard) or t.placements[0].dim != 0:
        raise PodiumError(f"rank-local loading reads dim-0 shards; got placements {t.placements}")
    mesh = t.device_mesh
    start, stop = shard_rows(t.shape[0], mesh.size(), mesh.get_local_rank())
    if t.to_local().shape[0] != stop - start:
        raise PodiumError(f"rank-local loading: local shard has {t.to_local().shape[0]} rows, expected {stop - start} "
                          f"(rows {start}:{stop} of {t.shape[0]})")
    return start, stop


# --- the weight files ---------------------------------------------------------------------------------

# safetensors dtype names (the format's header) -> torch dtypes
ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
MAX_HEADER = 100 * 2**20  # the safetensors format's own bound on a header


@dataclass
class WeightFiles:
    """The safetensors files of a model folder and which file holds each tensor (the index of a sharded layout,
    else every `*.safetensors` file's own keys). Read rows with `rows` inside `with files:`.

    Rows are read with positioned reads of exactly their bytes (a tensor is stored row-major, so rows [a, b) are
    one contiguous byte range), not through a memory map: the pages of a mapped file count in the process's
    resident memory while the file stays open, and the kernel's read-ahead maps neighbouring rows too. Each
    file's header is checked (dtype, shape, offsets inside the file) before any of its bytes are used."""

    folder: Path
    where: dict[str, str] = field(default_factory=dict)  # tensor name -> file name
    _headers: dict[str, tuple[int, dict]] = field(default_factory=dict, repr=False)  # file -> (data start, header)
    _open: dict[str, object] = field(default_factory=dict, repr=False)
    _stack: ExitStack | None = field(default=None, repr=False)
    bytes_read: int = 0

    @classmethod
    def of(cls, folder: str | os.PathLike) -> WeightFiles:
        folder = Path(folder)
        index = folder / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                files = set(weight_map.values())
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise PodiumError(f"{index}: not a safetensors index ({type(e).__name__}: {e}); expected "
                                  '{"weight_map": {tensor: file}}') from None
            for name in files:
                if not isinstance(name, str) or "/" in name or name.startswith(".") or not (folder / name).is_file():
                    raise PodiumError(f"{index}: names {name!r}, which is not a file in {folder}")
            return cls(folder, dict(weight_map))
        files = sorted(p.name for p in folder.glob("*.safetensors"))
        if not files:
            raise PodiumError(f"{folder}: no *.safetensors weights to load")
        out = cls(folder)
        for name in files:
            out.where.update(dict.fromkeys(out._header(name)[1], name))
        return out

    def keys(self):
        return self.where.keys()

    def __enter__(self) -> WeightFiles:
        self._stack = ExitStack()
        return self

    def __exit__(self, *exc) -> None:
        self._open.clear()
        if self._stack is not None:
            self._stack.close()
        self._stack = None

    def _header(self, file: str) -> tuple[int, dict]:
        """(offset of the data, {tensor: {dtype, shape, data_offsets}}) of one file, checked."""
        if file not in self._headers:
            path = self.folder / file
            try:
                size = path.stat().st_size
                with open(path, "rb") as f:
                    n = int.from_bytes(f.read(8), "little")
                    if not 0 < n <= min(MAX_HEADER, size - 8):
                        raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
                    header = json.loads(f.read(n))
                header.pop("__metadata__", None)
                for name, entry in header.items():
                    begin, end = entry["data_offsets"]
                    count = 1
                    for d in entry["shape"]:
                        count *= int(d)
                    itemsize = torch.empty((), dtype=ST_DTYPES[entry["dtype"]]).element_size()
                    if not 0 <= begin <= end <= size - 8 - n or end - begin != count * itemsize:
                        raise ValueError(f"tensor {name!r}: offsets {begin}..{end} do not hold shape {entry['shape']} "
                                         f"of {entry['dtype']} inside the file")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise PodiumError(f"{path}: damaged or unreadable safetensors file ({type(e).__name__}: {e})") from None
            self._headers[file] = (8 + n, header)
        return self._headers[file]

    def _entry(self, name: str) -> tuple[str, int, dict]:
        file = self.where[name]
        start, header = self._header(file)
        if name not in header:
            raise PodiumError(f"{self.folder / file}: no tensor {name!r}, which {INDEX} places there")
        return file, start, header[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._entry(name)[2]["shape"])

    def rows(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) of tensor `name` (all of it when start is None), read from its file alone."""
        file, data, entry = self._entry(name)
        shape = [int(d) for d in entry["shape"]]
        dtype = ST_DTYPES[entry["dtype"]]
        if start is None or not shape:
            start, stop = 0, (shape[0] if shape else 1)
        rows = max(0, stop - start)
        begin, end = entry["data_offsets"]
        row_bytes = (end - begin) // (shape[0] if shape and shape[0] else 1)
        out_shape = [rows, *shape[1:]] if shape else []
        if rows == 0 or row_bytes == 0:
            return torch.empty(out_shape, dtype=dtype)
        if self._stack is None:
            raise RuntimeError("WeightFiles.rows outside `with files:`")
        if file not in self._open:
            self._open[file] = self._stack.enter_context(open(self.folder / file, "rb"))
        f = self._open[file]
        buffer = bytearray(rows * row_bytes)
        f.seek(data + begin + start * row_bytes)
        if f.readinto(buffer) != len(buffer):
            raise PodiumError(f"{self.folder / file}: {name!r} ends before its header says (truncated file?)")
        self.bytes_read += len(buffer)
        return torch.frombuffer(buffer, dtype=dtype).view(out_shape)


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


def unwrapped_name(name: str) -> str:
    """A parameter's name without peft's `.base_layer` wrappers (nested ones too: LoRA on Mixtral's experts)."""
    return re.sub(r"(\.base_layer)+\.", ".", name)


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
