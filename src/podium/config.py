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

# A recipe expands to a few hundred values. YAML aliases can make a few hundred bytes expand to
# billions (the "billion laughs" document: 583 bytes, 9 aliases of 9), so a document whose
# expansion passes this many values is refused before it is built.
MAX_YAML_VALUES = 100_000
MAP_TAG, SEQ_TAG, MERGE_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"


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
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column}); "
                          "save the file as UTF-8") from None
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
    built = 0

    def build(n, keypath):
        nonlocal built
        built += 1
        if built > MAX_YAML_VALUES:
            raise ConfigError(f"{path}: the document expands to more than {MAX_YAML_VALUES:,} values (aliases "
                              "repeated inside aliases?); podium refuses it rather than run out of memory")
        located.lines.setdefault(keypath, n.start_mark.line + 1)
        line = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            if n.tag not in (MAP_TAG, "!"):
                raise ConfigError(f"{path}:{line}: unsupported YAML tag {n.tag!r}")
            out = {}
            # `<<: *defaults` merge keys: merged values first, keys written out in the mapping win.
            for k_node, v_node in n.value:
                if k_node.tag == MERGE_TAG:
                    for src in v_node.value if isinstance(v_node, yaml.SequenceNode) else [v_node]:
                        if not isinstance(src, yaml.MappingNode):
                            raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: `<<` merges mappings only")
                        for k, v in build(src, keypath).items():
                            out.setdefault(k, v)
            explicit = set()
            for k_node, v_node in n.value:
                if k_node.tag == MERGE_TAG:
                    continue
                if not isinstance(k_node, yaml.ScalarNode):
                    raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: a key must be a plain value, "
                                      "not a list or mapping")
                key = constructor.construct_object(k_node, deep=True)
                sub = keypath + (key,)
                if key in explicit:
                    raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: duplicate key {key!r}")
                explicit.add(key)
                located.lines[sub] = k_node.start_mark.line + 1
                out[key] = build(v_node, sub)
            return out
        if isinstance(n, yaml.SequenceNode):
            if n.tag not in (SEQ_TAG, "!"):
                raise ConfigError(f"{path}:{line}: unsupported YAML tag {n.tag!r}")
            return [build(item, keypath + (i,)) for i, item in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    try:
        located.data = build(node, ())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the document nests too deeply (a recursive alias?)") from None
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
