"""Per-tensor parameter values: gradients over layers, `filter` lists, and scope precedence (mergekit 0.1.5).

A setting is a scalar, a gradient list [v0, ..., vn] (piecewise linear over the layers of a
slice), or a list of `{filter, value}` entries (first filter that is a substring of the tensor
name wins). A value is looked up in the input's own parameters, then the slice's, then the
config's top level, then the method's default.
"""

from __future__ import annotations

from podium.errors import ConfigError
from podium.merging.config import InputModel, MergeConfig
from podium.merging.registry import NON_BASE, REQUIRED, SHARED, MethodSpec


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


def resolve(spec: MethodSpec, scopes: list[dict | None], tensor_name: str, t: float, pname: str, where: str):
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
                              sources: list[InputModel], base_index: int | None, out_name: str,
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
