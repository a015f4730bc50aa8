"""mergekit-compatible merge configs: read the YAML, validate it into a `MergeConfig`.

Accepted keys follow mergekit 0.1.5: `models` or `slices` (sources with `layer_range`),
`merge_method`, `base_model`, `parameters` (scalars, gradients, `filter` lists), `dtype`,
`out_dtype`, `tokenizer_source` (base | union | a model). A model reference may be
`BASE+ADAPTER` to apply a LoRA adapter on the fly (mergekit's syntax). Files are read with
podium's own YAML loader, so every error names the file, the line and the field.
Per-tensor parameter values (gradients, filters) are resolved in `parameters.py`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from podium.config import Located, load_yaml
from podium.errors import ConfigError
from podium.merging.registry import MERGE_METHODS, MethodSpec
from podium.models.dtypes import DTYPE_NAMES

TOP_KEYS = {"models", "slices", "merge_method", "base_model", "parameters", "dtype", "out_dtype",
            "tokenizer_source", "random_seed", "name"}


@dataclass
class InputModel:
    """One input of a merge: a model reference, its layers (under `slices`) and its own parameters."""

    model: str
    layer_range: tuple[int, int] | None = None
    parameters: dict | None = None


@dataclass
class OutputSlice:
    """A run of output layers merged from the same layer span of each source."""

    sources: list[InputModel]
    base_model: str | None = None
    parameters: dict | None = None


@dataclass
class MergeConfig:
    """A validated merge config. `slices` is None when the config used `models`."""

    merge_method: str
    method: MethodSpec
    models: list[InputModel] | None = None
    slices: list[OutputSlice] | None = None
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
        return yaml.safe_dump(self.raw, sort_keys=False, default_flow_style=None).rstrip()


def load_config(path: str | os.PathLike) -> MergeConfig:
    """Read a mergekit YAML file (or a podium recipe with one inline merge stage); errors name file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: merge config not found")
    located = load_yaml(p)
    raw = located.data
    if isinstance(raw, dict) and "stages" in raw:
        # a podium recipe whose one merge stage carries an inline mergekit config
        stages = raw["stages"] if isinstance(raw["stages"], list) else []
        merges = [i for i, s in enumerate(stages) if isinstance(s, dict) and s.get("kind") == "merge"]
        if len(merges) != 1 or not isinstance(stages[merges[0]].get("config"), dict):
            raise ConfigError(f"{located.where(('stages',))}: a recipe given to `podium merge` needs exactly one "
                              "`kind: merge` stage with an inline `config:`")
        i = merges[0]
        return parse_config(stages[i]["config"], origin=str(p), located=located, at=("stages", i, "config"))
    return parse_config(raw, origin=str(p), located=located)


class _Where:
    """Formats `FILE:LINE: field` for a key path below `at` in a located YAML document."""

    def __init__(self, origin: str, located: Located | None, at: tuple):
        self.origin, self.located, self.at = origin, located, at

    def __call__(self, *keypath, name: str | None = None) -> str:
        line = self.located.line(self.at + keypath) if self.located else None
        head = f"{self.origin}:{line}" if line else self.origin
        return f"{head}: {name if name is not None else keypath[-1]}" if keypath or name else head


def parse_config(raw: Any, origin: str = "<config>", located: Located | None = None, at: tuple = ()) -> MergeConfig:
    """Validate a mergekit config mapping (from a file, or a recipe's inline `config:`).

    `located`/`at`: the YAML document `raw` was read from and its key path there, for line numbers.
    """
    where = _Where(origin, located, at)
    name, spec = _check_top_level(raw, where)
    parser = _Parser(raw, where, name, spec)
    cfg = MergeConfig(merge_method=name, method=spec, raw=raw, origin=origin,
                      base_model=str(raw["base_model"]) if raw.get("base_model") else None,
                      parameters=parser.params(("parameters",), "top level"), dtype=raw.get("dtype"),
                      out_dtype=raw.get("out_dtype"), tokenizer_source=raw.get("tokenizer_source"),
                      random_seed=raw.get("random_seed"))
    if "models" in raw:
        if not isinstance(raw["models"], list) or not raw["models"]:
            raise ConfigError(f"{where('models')}: must be a non-empty list")
        cfg.models = [parser.source(("models", i), f"models[{i}]", False) for i in range(len(raw["models"]))]
        check_weight_sum(cfg, where)
        return cfg
    if not isinstance(raw["slices"], list) or not raw["slices"]:
        raise ConfigError(f"{where('slices')}: must be a non-empty list")
    cfg.slices = [parser.output_slice(i, s) for i, s in enumerate(raw["slices"])]
    return cfg


def _check_top_level(raw: Any, where: _Where) -> tuple[str, MethodSpec]:
    """The top-level keys and their types, the merge method, `models` xor `slices`, known dtypes."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where()}: a merge config must be a mapping")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{where(key)}: unknown key; expected one of {', '.join(sorted(TOP_KEYS))}")
    for key, types, what in (("merge_method", (str,), "a method name"), ("base_model", (str,), "a model"),
                             ("dtype", (str,), "a dtype name"), ("out_dtype", (str,), "a dtype name"),
                             ("tokenizer_source", (str,), "base, union or a model"), ("name", (str,), "a name"),
                             ("random_seed", (int,), "an integer")):
        value = raw.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise ConfigError(f"{where(key)}: expected {what}, got {value!r:.60}")
    name = raw.get("merge_method")
    if name not in MERGE_METHODS:
        raise ConfigError(f"{where('merge_method')}: unknown merge method {name!r}; known methods: "
                          f"{', '.join(sorted(MERGE_METHODS))}")
    if ("models" in raw) == ("slices" in raw):
        raise ConfigError(f"{where()}: give exactly one of `models` or `slices`")
    for key in ("dtype", "out_dtype"):
        if raw.get(key) is not None and raw[key] not in DTYPE_NAMES:
            raise ConfigError(f"{where(key)}: unknown dtype {raw[key]!r}; use one of {', '.join(sorted(DTYPE_NAMES))}")
    return name, MERGE_METHODS[name]


class _Parser:
    """The nested parts of one merge config: `parameters` mappings, input models, output slices."""

    def __init__(self, raw: dict, where: _Where, name: str, spec: MethodSpec):
        self.raw, self.where, self.name, self.spec = raw, where, name, spec

    def params(self, path: tuple, ctx: str) -> dict | None:
        """The `parameters` mapping at `path`: known to the method, numbers finite, slerp's t in [0, 1]."""
        where, spec, name = self.where, self.spec, self.name
        value = _get(self.raw, path)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{where(*path)}: `parameters` must be a mapping")
        for pname, setting in value.items():
            loc = f"{where(*path, pname)} ({ctx})"
            if pname not in spec.params:
                known = ", ".join(sorted(spec.params)) or "none"
                raise ConfigError(f"{loc}: unknown parameter {pname!r} for merge method {name!r}; its parameters: {known}")
            _check_setting(setting, loc)
            if spec.params[pname].kind is float:
                for v in _leaves(setting):
                    try:
                        number = float(v)
                    except ValueError:
                        raise ConfigError(f"{loc}: {v!r} is not a number") from None
                    if not math.isfinite(number):
                        raise ConfigError(f"{loc}: {v!r} is not a finite number")
            if name == "slerp" and pname == "t":
                for v in _numbers(setting):
                    if not 0 <= v <= 1:
                        raise ConfigError(f"{loc}: slerp t={v} is outside [0, 1]")
        return value

    def source(self, path: tuple, ctx: str, need_range: bool) -> InputModel:
        """One input model (`model`, `layer_range` under slices only, `parameters`)."""
        where = self.where
        d = _get(self.raw, path)
        if not isinstance(d, dict) or "model" not in d:
            raise ConfigError(f"{where(*path, name=ctx)}: each entry needs a `model`")
        for key in d:
            if key not in {"model", "layer_range", "parameters"}:
                raise ConfigError(f"{where(*path, key)} ({ctx}): unknown key")
        lr = d.get("layer_range")
        if need_range:
            if (not isinstance(lr, list) or len(lr) != 2 or not all(isinstance(v, int) for v in lr)
                    or not 0 <= lr[0] < lr[1]):
                raise ConfigError(f"{where(*path, 'layer_range')} ({ctx}, model {d['model']}): layer_range must be "
                                  "[start, end] with 0 <= start < end")
            lr = (lr[0], lr[1])
        elif lr is not None:
            raise ConfigError(f"{where(*path, 'layer_range')} ({ctx}): layer_range belongs under `slices`")
        return InputModel(str(d["model"]), lr, self.params((*path, "parameters"), f"{ctx}, model {d['model']}"))

    def output_slice(self, i: int, s) -> OutputSlice:
        """Slice `i` of `slices`: its sources (the same number of layers each), base model and parameters."""
        where = self.where
        if not isinstance(s, dict) or not isinstance(s.get("sources"), list) or not s["sources"]:
            raise ConfigError(f"{where('slices', i, name=f'slices[{i}]')}: each slice needs `sources`")
        for key in s:
            if key not in {"sources", "base_model", "parameters"}:
                raise ConfigError(f"{where('slices', i, key)} (slices[{i}]): unknown key")
        srcs = [self.source(("slices", i, "sources", j), f"slices[{i}].sources[{j}]", True) for j in range(len(s["sources"]))]
        if len({b - a for a, b in (x.layer_range for x in srcs)}) != 1:
            raise ConfigError(f"{where('slices', i, name=f'slices[{i}]')}: all sources of a slice need the same "
                              "number of layers")
        return OutputSlice(srcs, str(s["base_model"]) if s.get("base_model") else None,
                           self.params(("slices", i, "parameters"), f"slices[{i}]"))


def check_weight_sum(cfg: MergeConfig, where) -> None:
    """Refuse normalised weights that sum to 0 (every merged tensor would be 0/0 = NaN), where they are scalars."""
    if "weight" not in cfg.method.params or "normalize" not in cfg.method.params:
        return
    normalize = (cfg.parameters or {}).get("normalize", cfg.method.params["normalize"].default)
    weights = [(m.parameters or {}).get("weight", (cfg.parameters or {}).get("weight")) for m in cfg.models or []]
    if normalize is True and weights and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        if sum(weights) == 0:
            raise ConfigError(f"{where('models')}: the weights sum to 0 and `normalize` divides by their sum, so every "
                              "merged tensor would be NaN; change the weights or set `normalize: false`")


def _get(raw, path: tuple):
    node = raw
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return None
    return node


def _check_setting(setting, loc: str) -> None:
    scalar = (bool, int, float, str)
    if isinstance(setting, float) and not math.isfinite(setting):
        raise ConfigError(f"{loc}: {setting} is not a finite number; a merge with it would publish NaN weights")
    if isinstance(setting, scalar):
        return
    if isinstance(setting, dict):
        setting = [setting]
    if not isinstance(setting, list) or not setting:
        raise ConfigError(f"{loc}: a parameter is a scalar, a gradient list or a list of {{filter, value}}")
    if all(isinstance(v, scalar) for v in setting):
        for v in setting:
            _check_setting(v, loc)
        return
    for cond in setting:
        if not isinstance(cond, dict) or "value" not in cond or set(cond) - {"filter", "value"}:
            raise ConfigError(f"{loc}: each conditional entry needs `value` and an optional `filter`")
        _check_setting(cond["value"], loc)


def _leaves(setting) -> list:
    """The scalar values of a setting (a scalar, a gradient list or `{filter, value}` entries)."""
    if isinstance(setting, dict):
        return _leaves(setting.get("value"))
    if isinstance(setting, list):
        return [v for s in setting for v in _leaves(s)]
    return [] if setting is None else [setting]


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
