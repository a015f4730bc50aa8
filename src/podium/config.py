"""Recipes and stage configs: YAML loading with line numbers, overrides, validation errors.

Every error names the file, the line and the key, e.g.
`recipes/quickstart.yaml:12: stage 'sft': unknown key 'learing_rate'`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from podium.errors import ConfigError

KeyPath = tuple


@dataclass
class Located:
    """A parsed YAML document plus the line of every key path in it."""

    data: Any
    path: str
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, keypath: KeyPath) -> int | None:
        """Line of the longest known prefix of `keypath`."""
        for end in range(len(keypath), -1, -1):
            if tuple(keypath[:end]) in self.lines:
                return self.lines[tuple(keypath[:end])]
        return None

    def where(self, keypath: KeyPath = ()) -> str:
        line = self.line(keypath)
        return f"{self.path}:{line}" if line else self.path


def load_yaml(path: str | os.PathLike) -> Located:
    """Parse a YAML file, keeping the line of every mapping key and list item."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: str = "<string>") -> Located:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()
    located = Located(None, path)
    if node is None:
        located.data = {}
        return located

    constructor = yaml.SafeLoader("")

    def build(n, keypath):
        located.lines.setdefault(keypath, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out = {}
            for k_node, v_node in n.value:
                key = constructor.construct_object(k_node, deep=True)
                sub = keypath + (key,)
                if key in out:
                    raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: duplicate key {key!r}")
                located.lines[sub] = k_node.start_mark.line + 1
                out[key] = build(v_node, sub)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, keypath + (i,)) for i, item in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    located.data = build(node, ())
    return located


def parse_override(text: str) -> tuple[list[str], Any]:
    """`sft.learning_rate=1e-3` -> (["sft", "learning_rate"], 0.001); values are YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. sft.learning_rate=1e-4")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-3 as a string (no dot); users mean a number.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            pass
    return key.strip().split("."), value


def set_in(data: dict, keys: list[str], value: Any) -> None:
    """Set `value` at a dotted key path; numeric keys index lists (`sft.data.0.count=100`)."""
    node = data
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise ConfigError(f"override {'.'.join(keys)}: {k!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(k)] = value
                return
            node = node[int(k)]
        elif isinstance(node, dict):
            if last:
                node[k] = value
                return
            node = node.setdefault(k, {})
        else:
            raise ConfigError(f"override {'.'.join(keys)}: {keys[i - 1]!r} is not a mapping or list")


def invalid(loc: KeyPath, message: str, value: Any = None, title: str = "config") -> ValidationError:
    """A validation error at key path `loc`, for a schema's own checks (raise it inside a validator).

    pydantic then reports it like a type error, so recipe errors name the file, line and key of `loc`
    (a plain ValueError in a model validator would point at the whole stage).
    """
    error = PydanticCustomError("podium", "{message}", {"message": message})
    return ValidationError.from_exception_data(title, [InitErrorDetails(type=error, loc=tuple(loc), input=value)])


def relocated(errors: list[ValidationError], prefixes: list[KeyPath], title: str = "config") -> ValidationError:
    """One validation error holding the errors of nested validations, each under its key path prefix.

    For a validator that checks sub-configs itself (each source of a mixture, selfplay's `train:`),
    so that the error still names the key inside them (`data.0.taks`).
    """
    details = [InitErrorDetails(type=PydanticCustomError(err["type"], "{message}", {"message": err["msg"]}),
                                loc=tuple(prefix) + tuple(err["loc"]), input=err.get("input"))
               for e, prefix in zip(errors, prefixes) for err in e.errors()]
    return ValidationError.from_exception_data(title, details)


def validate(model: type[BaseModel], data: dict, located: Located, base: KeyPath, what: str) -> BaseModel:
    """Validate `data` (found at key path `base` of `located`) against a pydantic schema."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, located, base, what)) from None


def format_validation_error(e: ValidationError, located: Located, base: KeyPath, what: str) -> str:
    msgs = []
    for err in e.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        key = ".".join(str(x) for x in loc) or "(top level)"
        where = located.where(base + loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            text = f"unknown key {key!r}"
        elif kind == "missing":
            text = f"missing required key {key!r}"
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            text = f"key {key!r}: {err['msg']}{shown}"
        msgs.append(f"{where}: {what}: {text}")
    return "\n".join(msgs)


def load_stage_config(model: type[BaseModel], path: str, overrides: list[str] = (), what: str = "config"):
    """Load a standalone stage config file (`podium train CONFIG.yaml k=v`): returns (cfg, output_dir)."""
    located = load_yaml(path)
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError(f"{located.where()}: expected a mapping of settings")
    for ov in overrides:
        keys, value = parse_override(ov)
        set_in(data, keys, value)
    output_dir = data.pop("output_dir", None)
    cfg = validate(model, data, located, (), what)
    return cfg, output_dir
