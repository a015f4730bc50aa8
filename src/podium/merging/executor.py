"""Streaming merge executor: plan every output tensor, then read, merge and write one at a time.

Planning reads only safetensors headers, so every config mistake (missing tensor, shape or
architecture mismatch, bad parameter) surfaces before any weight is read. Output shards are
written straight to disk: the safetensors header is known from the plan, so each merged tensor
is appended as soon as it exists and peak memory stays near one tensor per input plus one
output tensor. Everything is written to a temp folder that is renamed into place at the end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from podium.errors import PodiumError
from podium.merging.config import MergeConfig, Slice, Source, resolve_tensor_parameters
from podium.merging.lora import LoraAdapter
from podium.models.io import publish_folder

log = logging.getLogger("podium.merge")

TORCH_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}
FROM_ST = {v: k for k, v in ST_DTYPES.items()}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json", "chat_template.jinja"]
LAYER = re.compile(r"^(?P<prefix>.*?layers)\.(?P<idx>\d+)\.(?P<rest>.+)$")


def resolve_model_path(name: str) -> Path:
    """A local folder as is; a Hub id from the local cache (or a download when online)."""
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.safetensors", "*.json", "tokenizer*",
                                                            "*.model", "*.txt", "*.jinja"]))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no access: all mean "not available"
        raise PodiumError(f"model {name!r}: not a local folder and not available from the Hub "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


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
    def num_layers(self) -> int:
        cfg = self.config.get("text_config", self.config)
        if "num_hidden_layers" not in cfg:
            raise PodiumError(f"model {self.ref}: config.json has no num_hidden_layers")
        return int(cfg["num_hidden_layers"])

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor with plain file reads (no mmap, so untouched weights never count as resident)."""
        file = self.index[name]
        if file not in self._handles:
            self._handles[file] = open(file, "rb")  # noqa: SIM115 - kept open for the whole merge, closed in close()
        shape, dtype = self.meta[name]
        t = torch.empty(shape, dtype=dtype)
        buf = t.reshape(-1).view(torch.uint8).numpy()
        f = self._handles[file]
        f.seek(self._offsets[name])
        if f.readinto(buf) != buf.nbytes:
            raise PodiumError(f"model {self.ref}: {file} is truncated (tensor {name})")
        return self.lora.apply(name, t) if self.lora else t

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()


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
        if info["dtype"] not in FROM_ST:
            raise PodiumError(f"{file}: tensor {key} has unsupported dtype {info['dtype']}")
        out[key] = (tuple(info["shape"]), FROM_ST[info["dtype"]], 8 + n + info["data_offsets"][0])
    return out


@dataclass
class TensorTask:
    out_name: str
    inputs: list[tuple[ModelSource, str]]
    base_index: int | None
    shared: dict
    per_input: list[dict]
    shape: tuple[int, ...]
    out_dtype: torch.dtype
    in_dtype: torch.dtype | None


@dataclass
class Plan:
    tasks: list[TensorTask]
    num_layers: int
    layer_sources: list[tuple[ModelSource, int]]  # (model, input layer) per output layer
    base: ModelSource
    models: dict[str, ModelSource]


def plan_merge(cfg: MergeConfig, models: dict[str, ModelSource] | None = None) -> Plan:
    """Resolve every output tensor: inputs, parameters, shape and dtype. Reads headers only."""
    models = models or {ref: ModelSource(ref) for ref in cfg.referenced_models()}
    archs = {ref: tuple(m.config.get("architectures") or [m.config.get("model_type")]) for ref, m in models.items()}
    if len(set(archs.values())) > 1:
        detail = "; ".join(f"{r}: {', '.join(map(str, a))}" for r, a in archs.items())
        raise PodiumError(f"models have different architectures ({detail})")
    base_ref = cfg.base_model or cfg.referenced_models()[0]
    spec = cfg.method

    if cfg.slices is not None:
        slices = cfg.slices
    else:
        sources = [Source(s.model, (0, models[s.model].num_layers), s.parameters) for s in cfg.models]
        if cfg.base_model and cfg.base_model not in [s.model for s in sources]:
            sources.append(Source(cfg.base_model, (0, models[cfg.base_model].num_layers), None))
        slices = [Slice(sources)]

    def base_of(i: int, sl: Slice) -> int | None:
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

    for i, sl in enumerate(slices):
        for s in sl.sources:
            n = models[s.model].num_layers
            if s.layer_range[1] > n:
                raise PodiumError(f"slices[{i}]: layer_range {list(s.layer_range)} is out of bounds for model "
                                  f"{s.model}, which has {n} layers")

    ref_model = models[base_ref]
    non_layer: list[str] = []
    for name in ref_model.index:
        if not LAYER.match(name):
            non_layer.append(name)
    pre = [n for n in non_layer if "embed" in n or n.endswith(("wte.weight", "wpe.weight"))]
    post = [n for n in non_layer if n not in pre]

    def rests_at(model: ModelSource, layer: int) -> tuple[str, list[str]]:
        prefix, rests = None, []
        for name in model.index:
            m = LAYER.match(name)
            if m and int(m["idx"]) == layer:
                prefix = m["prefix"]
                rests.append(m["rest"])
        if prefix is None:
            raise PodiumError(f"model {model.ref}: no tensors for layer {layer}")
        return prefix, rests

    tasks: list[TensorTask] = []

    def add(out_name, srcs: list[Source], in_names, base_index, sl_params, t):
        ins = []
        shape = None
        for s, n in zip(srcs, in_names):
            m = models[s.model]
            if n not in m.meta:
                raise PodiumError(f"model {s.model}: missing tensor {n} (needed for output {out_name})")
            sh = m.meta[n][0]
            if shape is None:
                shape, first = sh, s.model
            elif sh != shape:
                raise PodiumError(f"tensor {n}: shape {list(sh)} in model {s.model} does not match "
                                  f"{list(shape)} in model {first}")
            ins.append((m, n))
        shared, per_input = resolve_tensor_parameters(spec, cfg, sl_params, srcs, base_index, out_name,
                                                      list(in_names), t)
        in_dtype = TORCH_DTYPES[cfg.dtype] if cfg.dtype else None
        keep = ins[base_index if base_index is not None and spec.name != "linear" else 0]
        result_dtype = in_dtype or keep[0].meta[keep[1]][1]
        out_dtype = TORCH_DTYPES[cfg.out_dtype] if cfg.out_dtype else result_dtype
        tasks.append(TensorTask(out_name, ins, base_index, shared, per_input, shape, out_dtype, in_dtype))

    def add_non_layer(names, sl: Slice, i: int):
        base_index = base_of(i, sl)
        for name in names:
            present = [name in models[s.model].index for s in sl.sources]
            if not any(present):
                continue
            add(name, sl.sources, [name] * len(sl.sources), base_index, sl.parameters, 0.0)

    add_non_layer(pre, slices[0], 0)
    layer_sources = []
    out_layer = 0
    for i, sl in enumerate(slices):
        base_index = base_of(i, sl)
        n = sl.sources[0].layer_range[1] - sl.sources[0].layer_range[0]
        for offset in range(n):
            t = offset / (n - 1) if n > 1 else 1.0
            first = models[sl.sources[0].model]
            prefix, rests = rests_at(first, sl.sources[0].layer_range[0] + offset)
            for s in sl.sources[1:]:
                other_prefix, other = rests_at(models[s.model], s.layer_range[0] + offset)
                extra = sorted(set(other) - set(rests))
                if extra:
                    raise PodiumError(f"model {s.model}: tensor {other_prefix}.{s.layer_range[0] + offset}."
                                      f"{extra[0]} has no counterpart in model {first.ref}")
            layer_sources.append((first, sl.sources[0].layer_range[0] + offset))
            for rest in rests:
                in_names = [f"{prefix}.{s.layer_range[0] + offset}.{rest}" for s in sl.sources]
                add(f"{prefix}.{out_layer}.{rest}", sl.sources, in_names, base_index, sl.parameters, t)
            out_layer += 1
    add_non_layer(post, slices[-1], len(slices) - 1)
    return Plan(tasks, out_layer, layer_sources, ref_model, models)


def _seed_for(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % (2**63))


def execute_task(task: TensorTask, fn, generator: torch.Generator | None = None) -> torch.Tensor:
    tensors = [m.get(n) for m, n in task.inputs]
    if task.in_dtype is not None:
        tensors = [x.to(task.in_dtype) for x in tensors]
    out = fn(tensors, task.base_index, task.shared, task.per_input, generator)
    return out.to(task.out_dtype)


class StreamingShardWriter:
    """Writes one safetensors file whose header is known in advance, tensor by tensor."""

    def __init__(self, path: Path, entries: list[tuple[str, torch.dtype, tuple[int, ...]]]):
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dtype, shape in entries:
            n = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.expected = [(name, dtype, tuple(shape)) for name, dtype, shape in entries]
        self.pos = 0
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close(), tensors arrive one call at a time
        self.file.write(struct.pack("<Q", len(raw)))
        self.file.write(raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        exp = self.expected[self.pos]
        if (name, tensor.dtype, tuple(tensor.shape)) != exp:
            raise RuntimeError(f"merge produced {name} {tensor.dtype} {tuple(tensor.shape)}, planned {exp}")
        self.file.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
        self.pos += 1

    def close(self) -> None:
        self.file.close()


def _shards(tasks: list[TensorTask], max_bytes: int) -> list[list[TensorTask]]:
    shards, cur, size = [], [], 0
    for t in tasks:
        n = torch.Size(t.shape).numel() * torch.empty((), dtype=t.out_dtype).element_size()
        if cur and size + n > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += n
    if cur:
        shards.append(cur)
    return shards


def _out_config(cfg: MergeConfig, plan: Plan) -> dict:
    out = json.loads(json.dumps(plan.base.config))
    target = out.get("text_config", out) if "num_hidden_layers" not in out else out
    target["num_hidden_layers"] = plan.num_layers
    if isinstance(target.get("layer_types"), list):
        types = []
        for m, layer in plan.layer_sources:
            src_cfg = m.config.get("text_config", m.config)
            types.append(src_cfg.get("layer_types", [])[layer] if layer < len(src_cfg.get("layer_types", [])) else
                         target["layer_types"][-1])
        target["layer_types"] = types
    name = cfg.out_dtype or cfg.dtype
    if name:
        canonical = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(name, name)
        out["dtype" if "dtype" in out or "torch_dtype" not in out else "torch_dtype"] = canonical
    return out


def _copy_tokenizer(cfg: MergeConfig, plan: Plan, tmp: Path) -> None:
    source = cfg.tokenizer_source
    if source in (None, "base"):
        src = plan.base
    elif source == "union":
        vocabs = {}
        for ref, m in plan.models.items():
            f = m.path / "tokenizer.json"
            vocabs[ref] = f.read_text() if f.is_file() else None
            if vocabs[ref] is not None:
                tok = json.loads(vocabs[ref])
                vocabs[ref] = json.dumps([tok.get("model", {}).get("vocab"), tok.get("added_tokens")], sort_keys=True)
        if len(set(vocabs.values())) > 1:
            raise PodiumError("tokenizer_source: union of different vocabularies is not supported; the models' "
                              f"tokenizers differ ({', '.join(vocabs)}). Use tokenizer_source: base")
        src = plan.base
    else:
        src = plan.models.get(source) or ModelSource(source)
    for name in TOKENIZER_FILES:
        if (src.path / name).is_file():
            shutil.copy2(src.path / name, tmp / name)
    gen = plan.base.path / "generation_config.json"
    if gen.is_file():
        shutil.copy2(gen, tmp / "generation_config.json")


def model_card(cfg: MergeConfig) -> str:
    models = cfg.referenced_models()
    base = [m.partition("+")[0] for m in models]
    lines = ["---", "base_model:", *[f"- {m}" for m in base], "library_name: transformers",
             "tags:", "- merge", "- podium", "---", "", "# Merged model", "",
             (f"This model was merged with podium using the **{cfg.merge_method}** merge method "
              "(mergekit-compatible configuration)."), "", "## Models merged", ""]
    lines += [f"- {m}" + (" (base)" if m == cfg.base_model else "") for m in models]
    lines += ["", "## Configuration", "", "```yaml", cfg.to_yaml(), "```", ""]
    return "\n".join(lines)


def run_merge(cfg: MergeConfig, out_dir: str | os.PathLike, *, seed: int | None = None,
              max_shard_size: int = 2 * 1024**3, progress: bool = False) -> dict:
    """Merge per `cfg` into `out_dir` (a transformers folder). Returns metrics for report.json.

    On any error no output is left behind: files appear in `out_dir` only after the merge finished.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    models = {}
    try:
        for ref in cfg.referenced_models():
            models[ref] = ModelSource(ref)
        plan = plan_merge(cfg, models)
        seed = seed if seed is not None else (cfg.random_seed or 0)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.tmp-merge-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            shards = _shards(plan.tasks, max_shard_size)
            names = (["model.safetensors"] if len(shards) == 1 else
                     [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
            weight_map, total, index = {}, 0, 0
            for shard, fname in zip(shards, names):
                writer = StreamingShardWriter(tmp / fname, [(t.out_name, t.out_dtype, t.shape) for t in shard])
                try:
                    for task in shard:
                        gen = _seed_for(seed, index) if cfg.method.random else None
                        writer.write(task.out_name, execute_task(task, cfg.method.fn, gen))
                        weight_map[task.out_name] = fname
                        total += torch.Size(task.shape).numel() * torch.empty((), dtype=task.out_dtype).element_size()
                        index += 1
                        if progress and index % 50 == 0:
                            log.info("merged %d/%d tensors", index, len(plan.tasks))
                finally:
                    writer.close()
            if len(shards) > 1:
                (tmp / "model.safetensors.index.json").write_text(json.dumps(
                    {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
            (tmp / "config.json").write_text(json.dumps(_out_config(cfg, plan), indent=2))
            _copy_tokenizer(cfg, plan, tmp)
            (tmp / "README.md").write_text(model_card(cfg))
            (tmp / "mergekit_config.yml").write_text(cfg.to_yaml() + "\n")
            publish_folder(tmp, out, stale_globs=("model*.safetensors*",))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        for m in models.values():
            m.close()
    return {"merge_seconds": time.perf_counter() - start, "num_tensors": float(len(plan.tasks)),
            "num_layers": float(plan.num_layers)}
