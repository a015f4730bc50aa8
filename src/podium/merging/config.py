"""mergekit-compatible merge configs: parse the YAML, validate it, resolve per-tensor parameters.

Accepted keys follow mergekit 0.1.5: `models` or `slices` (sources with `layer_range`),
`merge_method`, `base_model`, `parameters` (scalars, gradients, `filter` lists), `dtype`,
`out_dtype`, `tokenizer_source` (base | union | a model). A model reference may be
`BASE+ADAPTER` to apply a LoRA adapter on the fly (mergekit's syntax).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from podium.errors import ConfigError
from podium.merging.methods import METHODS, NON_BASE, REQUIRED, SHARED, MethodSpec

TOP_KEYS = {"models", "slices", "merge_method", "base_model", "parameters", "dtype", "out_dtype",
            "tokenizer_source", "random_seed", "name"}
DTYPES = {"float32", "float16", "bfloat16", "fp32", "fp16", "bf16"}


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line of each key (for error messages)."""


class LineDict(dict):
    lines: dict


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    out = LineDict()
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class Source:
    model: str
    layer_range: tuple[int, int] | None = None
    parameters: dict | None = None


@dataclass
class Slice:
    sources: list[Source]
    base_model: str | None = None
    parameters: dict | None = None


@dataclass
class MergeConfig:
    """A validated merge config. `slices` is None when the config used `models`."""

    merge_method: str
    method: MethodSpec
    models: list[Source] | None = None
    slices: list[Slice] | None = None
    base_model: str | None = None
    parameters: dict | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    random_seed: int | None = None
    raw: dict = field(default_factory=dict)
    origin: str = "<config>"

    def referenced_models(self) -> list[str]:
        seen: list[str] = []
        for m in ([self.base_model] if self.base_model else []) + [
            s.model for s in (self.models or [])] + [
                s.model for sl in (self.slices or []) for s in sl.sources]:
            if m not in seen:
                seen.append(m)
        return seen

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.raw), sort_keys=False, default_flow_style=None).rstrip()


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def load_config(path: str | os.PathLike) -> MergeConfig:
    """Read a mergekit YAML file; errors name the file, line and field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: merge config not found")
    try:
        raw = yaml.load(p.read_text(), Loader=_LineLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from None
    if isinstance(raw, dict) and "stages" in raw:
        # a podium recipe whose one merge stage carries an inline mergekit config
        merges = [s for s in raw["stages"] or [] if isinstance(s, dict) and s.get("kind") == "merge"]
        if len(merges) != 1 or not isinstance(merges[0].get("config"), dict):
            raise ConfigError(f"{p}: a recipe given to `podium merge` needs exactly one `kind: merge` stage "
                              "with an inline `config:`")
        return parse_config(merges[0]["config"], origin=str(p))
    return parse_config(raw, origin=str(p))


def parse_config(raw: Any, origin: str = "<config>") -> MergeConfig:
    """Validate a mergekit config dict (e.g. from a recipe's `config:`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: a merge config must be a mapping")

    def where(d, key) -> str:
        line = getattr(d, "lines", {}).get(key)
        return f"{origin}:{line}: {key}" if line else f"{origin}: {key}"

    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{where(raw, key)}: unknown key; expected one of {', '.join(sorted(TOP_KEYS))}")
    name = raw.get("merge_method")
    if name not in METHODS:
        raise ConfigError(f"{where(raw, 'merge_method')}: unknown merge method {name!r}; known methods: "
                          f"{', '.join(sorted(METHODS))}")
    spec = METHODS[name]
    if ("models" in raw) == ("slices" in raw):
        raise ConfigError(f"{origin}: give exactly one of `models` or `slices`")
    for key in ("dtype", "out_dtype"):
        if raw.get(key) is not None and raw[key] not in DTYPES:
            raise ConfigError(f"{where(raw, key)}: unknown dtype {raw[key]!r}; use one of {', '.join(sorted(DTYPES))}")

    def params(d, key, ctx) -> dict | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{where(d, key)}: `parameters` must be a mapping")
        for pname, setting in value.items():
            if pname not in spec.params:
                known = ", ".join(sorted(spec.params)) or "none"
                raise ConfigError(f"{where(value, pname)} ({ctx}): unknown parameter {pname!r} for merge method "
                                  f"{name!r}; its parameters: {known}")
            _check_setting(setting, where(value, pname))
            if name == "slerp" and pname == "t":
                for v in _numbers(setting):
                    if not 0 <= v <= 1:
                        raise ConfigError(f"{where(value, pname)} ({ctx}): slerp t={v} is outside [0, 1]")
        return value

    def source(d, ctx, need_range) -> Source:
        if not isinstance(d, dict) or "model" not in d:
            raise ConfigError(f"{origin} ({ctx}): each entry needs a `model`")
        for key in d:
            if key not in {"model", "layer_range", "parameters"}:
                raise ConfigError(f"{where(d, key)} ({ctx}): unknown key")
        lr = d.get("layer_range")
        if need_range:
            if (not isinstance(lr, list) or len(lr) != 2 or not all(isinstance(v, int) for v in lr)
                    or not 0 <= lr[0] < lr[1]):
                raise ConfigError(f"{where(d, 'layer_range') if lr is not None else origin} ({ctx}, model "
                                  f"{d['model']}): layer_range must be [start, end] with 0 <= start < end")
            lr = (lr[0], lr[1])
        elif lr is not None:
            raise ConfigError(f"{where(d, 'layer_range')} ({ctx}): layer_range belongs under `slices`")
        return Source(str(d["model"]), lr, params(d, "parameters", f"{ctx}, model {d['model']}"))

    cfg = MergeConfig(merge_method=name, method=spec, raw=raw, origin=origin,
                      base_model=str(raw["base_model"]) if raw.get("base_model") else None,
                      parameters=params(raw, "parameters", "top level"), dtype=raw.get("dtype"),
                      out_dtype=raw.get("out_dtype"), tokenizer_source=raw.get("tokenizer_source"),
                      random_seed=raw.get("random_seed"))
    if "models" in raw:
        if not isinstance(raw["models"], list) or not raw["models"]:
            raise ConfigError(f"{where(raw, 'models')}: must be a non-empty list")
        cfg.models = [source(m, f"models[{i}]", False) for i, m in enumerate(raw["models"])]
    else:
        if not isinstance(raw["slices"], list) or not raw["slices"]:
            raise ConfigError(f"{where(raw, 'slices')}: must be a non-empty list")
        cfg.slices = []
        for i, s in enumerate(raw["slices"]):
            if not isinstance(s, dict) or not s.get("sources"):
                raise ConfigError(f"{origin} (slices[{i}]): each slice needs `sources`")
            for key in s:
                if key not in {"sources", "base_model", "parameters"}:
                    raise ConfigError(f"{where(s, key)} (slices[{i}]): unknown key")
            srcs = [source(m, f"slices[{i}].sources[{j}]", True) for j, m in enumerate(s["sources"])]
            lengths = {b - a for a, b in (x.layer_range for x in srcs)}
            if len(lengths) != 1:
                raise ConfigError(f"{origin} (slices[{i}]): all sources of a slice need the same number of layers")
            cfg.slices.append(Slice(srcs, str(s["base_model"]) if s.get("base_model") else None,
                                    params(s, "parameters", f"slices[{i}]")))
    return cfg


def _check_setting(setting, loc: str) -> None:
    scalar = (bool, int, float, str)
    if isinstance(setting, scalar):
        return
    if isinstance(setting, dict):
        setting = [setting]
    if not isinstance(setting, list) or not setting:
        raise ConfigError(f"{loc}: a parameter is a scalar, a gradient list or a list of {{filter, value}}")
    if all(isinstance(v, scalar) for v in setting):
        return
    for cond in setting:
        if not isinstance(cond, dict) or "value" not in cond or set(cond) - {"filter", "value"}:
            raise ConfigError(f"{loc}: each conditional entry needs `value` and an optional `filter`")
        _check_setting(cond["value"], loc)


def _numbers(setting) -> list[float]:
    if isinstance(setting, bool):
        return []
    if isinstance(setting, (int, float)):
        return [float(setting)]
    if isinstance(setting, dict):
        return _numbers(setting["value"])
    if isinstance(setting, list):
        return [v for s in setting for v in _numbers(s)]
    return []


def _validate(value, kind: type):
    if kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in {"true", "1", "yes"}
        return bool(value)
    if value is None:
        return None
    return float(value)


def evaluate_setting(tensor_name: str, setting, t: float, kind: type = float):
    """Resolve filters and gradients at layer position t in [0, 1] (mergekit semantics).

    A gradient [v0, ..., vn] is piecewise linear: position t falls between entries
    floor(t·n) and the next. A filter list picks the first entry whose `filter` is a
    substring of the tensor name (no filter or "*" matches all); no match gives None.
    """
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, (bool, int, float, str)):
        return _validate(setting, kind)
    if all(isinstance(v, (bool, int, float, str)) for v in setting):
        values = [_validate(v, kind) for v in setting]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return values[int(t * (len(values) - 1))]
        scaled = t * (len(values) - 1)
        i0 = int(scaled)
        i1 = min(len(values) - 1, i0 + 1)
        frac = scaled - i0
        return _validate((1 - frac) * values[i0] + frac * values[i1], kind)
    for cond in setting:
        f = cond.get("filter")
        if f is None or f == "*" or (tensor_name and f in tensor_name):
            return evaluate_setting(tensor_name, cond["value"], t, kind)
    return None


def resolve(spec: MethodSpec, scopes: list[dict | None], tensor_name: str, t: float, pname: str,
            where: str):
    """First non-None value of parameter `pname` over `scopes` (highest precedence first), else its default."""
    param = spec.params[pname]
    for scope in scopes:
        if scope and pname in scope:
            value = evaluate_setting(tensor_name, scope[pname], t, param.kind)
            if value is not None:
                return value
    if param.default is REQUIRED:
        raise ConfigError(f"missing required parameter {pname!r} for {where} (merge method {spec.name!r})")
    return param.default


def resolve_tensor_parameters(spec: MethodSpec, cfg: MergeConfig, slice_params: dict | None,
                              sources: list[Source], base_index: int | None, out_name: str,
                              in_names: list[str], t: float) -> tuple[dict, list[dict]]:
    """Shared parameters (resolved against the output tensor name) and per-input ones (input names)."""
    shared = {p: resolve(spec, [slice_params, cfg.parameters], out_name, t, p, out_name)
              for p, param in spec.params.items() if param.scope == SHARED}
    per_input = []
    for i, (src, in_name) in enumerate(zip(sources, in_names)):
        per_input.append({
            p: resolve(spec, [src.parameters, slice_params, cfg.parameters], in_name, t, p,
                       f"{src.model}: {in_name}")
            for p, param in spec.params.items()
            if param.scope != SHARED and not (param.scope == NON_BASE and i == base_index)
        })
    if spec.name == "slerp" and not 0 <= shared["t"] <= 1:
        raise ConfigError(f"slerp t={shared['t']} is outside [0, 1] for tensor {out_name}")
    return shared, per_input
