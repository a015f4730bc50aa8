"""Recipes and stage configs: YAML loading with line numbers, overrides, validation errors.

Every error names the file, the line and the key, e.g.
`recipes/quickstart.yaml:12: stage 'sft': unknown key 'learing_rate'`.

(About 380 lines: the YAML reader and the validation that names its lines share `Located`, and every layer
imports both from here; split only with a reason stronger than length.)
"""

from __future__ import annotations

import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from podium.errors import ConfigError
from podium.limits import YAML_DEPTH, YAML_FILE, read_bounded

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
    """Parse a YAML file, keeping the line of every mapping key and list item.

    Only a regular file of at most `podium.limits.YAML_FILE` is read (never a FIFO or /dev/zero)."""
    path = str(path)
    raw = read_bounded(path, YAML_FILE, ConfigError, what="file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column}); "
                          "save the file as UTF-8") from None
    return parse_yaml(text, path)


def check_depth(text: str, path: str) -> None:
    """Refuse a document nested deeper than `YAML_DEPTH` before it is composed (PyYAML composes recursively)."""
    limit, depth = YAML_DEPTH.value, 0
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters already here
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > limit:
                    raise ConfigError(f"{path}:{event.start_mark.line + 1}: nested deeper than {limit} levels (the "
                                      f"limit on {YAML_DEPTH.what}); {YAML_DEPTH.raise_hint()}")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.StreamEndEvent):
                break
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()


def parse_yaml(text: str, path: str = "<string>") -> Located:
    """`text` as YAML data with the line of every key path (`Located`); anything but plain mappings, lists and
    scalars (tags, complex keys, duplicate keys, documents that expand past `MAX_YAML_VALUES`) is a ConfigError."""
    node = _compose(text, path)
    located = Located(None, path)
    if node is None:
        located.data = {}
        return located
    try:
        located.data = _Builder(located, path).build(node, ())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the document nests too deeply (a recursive alias?)") from None
    return located


def _compose(text: str, path: str):
    """The document's node tree (None: an empty document), YAML errors named by file and line."""
    check_depth(text, path)
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the document nests too deeply") from None
    finally:
        loader.dispose()


class _Builder:
    """Builds Python data from a node tree, recording each key path's line in `located.lines`."""

    def __init__(self, located: Located, path: str):
        self.located, self.path = located, path
        self.constructor = yaml.SafeLoader("")
        self.built = 0

    def build(self, n, keypath: tuple):
        path = self.path
        self.built += 1
        if self.built > MAX_YAML_VALUES:
            raise ConfigError(f"{path}: the document expands to more than {MAX_YAML_VALUES:,} values (aliases "
                              "repeated inside aliases?); podium refuses it rather than run out of memory")
        self.located.lines.setdefault(keypath, n.start_mark.line + 1)
        line = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            if n.tag not in (MAP_TAG, "!"):
                raise ConfigError(f"{path}:{line}: unsupported YAML tag {n.tag!r}")
            return self.mapping(n, keypath)
        if isinstance(n, yaml.SequenceNode):
            if n.tag not in (SEQ_TAG, "!"):
                raise ConfigError(f"{path}:{line}: unsupported YAML tag {n.tag!r}")
            return [self.build(item, keypath + (i,)) for i, item in enumerate(n.value)]
        return self.constructor.construct_object(n, deep=True)

    def mapping(self, n, keypath: tuple) -> dict:
        path = self.path
        out = {}
        # `<<: *defaults` merge keys as the YAML merge-key spec (yaml.org/type/merge.html) defines them:
        # keys written out in the mapping win; of a sequence `<<: [*a, *b]`, earlier mappings win. Two `<<`
        # keys in one mapping are a duplicate key, which YAML forbids (PyYAML lets the first win, others the
        # last): refused, so a recipe never means different things to different tools.
        merges = [k for k, _ in n.value if k.tag == MERGE_TAG]
        if len(merges) > 1:
            raise ConfigError(f"{path}:{merges[1].start_mark.line + 1}: a second `<<` merge key in one mapping "
                              f"(the first is on line {merges[0].start_mark.line + 1}); YAML keys are unique: write "
                              "`<<: [*first, *second]` (earlier mappings win)")
        for k_node, v_node in n.value:
            if k_node.tag == MERGE_TAG:
                for src in v_node.value if isinstance(v_node, yaml.SequenceNode) else [v_node]:
                    if not isinstance(src, yaml.MappingNode):
                        raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: `<<` merges mappings only")
                    for k, v in self.build(src, keypath).items():
                        out.setdefault(k, v)
        explicit = set()
        for k_node, v_node in n.value:
            if k_node.tag == MERGE_TAG:
                continue
            if not isinstance(k_node, yaml.ScalarNode):
                raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: a key must be a plain value, "
                                  "not a list or mapping")
            key = self.constructor.construct_object(k_node, deep=True)
            sub = keypath + (key,)
            if key in explicit:
                raise ConfigError(f"{path}:{k_node.start_mark.line + 1}: duplicate key {key!r}")
            explicit.add(key)
            self.located.lines[sub] = k_node.start_mark.line + 1
            out[key] = self.build(v_node, sub)
        return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`sft.learning_rate=1e-3` -> (["sft", "learning_rate"], 0.001); values are YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. sft.learning_rate=1e-4")
    key, raw = text.split("=", 1)
    if not key.strip() or any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:  # podium's loader: no tags, no recursive aliases (`&a [*a]`), bounded like a recipe
        value = parse_yaml(raw, f"override {text!r}").data if raw.strip() else ""
    except ConfigError:
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


# Integers a setting may hold: seeds, counts and steps reach numpy, torch and the filesystem as 64-bit values.
INT64_MAX = 2**63 - 1


def _shape(annotation) -> tuple[set, list, list, list]:
    """What an annotation accepts: (scalar types among bool/int/float, nested models, list item annotations,
    dict value annotations). `Any` and unknown types accept anything (no scalar types)."""
    scalars, models, items, values = set(), [], [], []
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _shape(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            s, m, i, v = _shape(arg)
            scalars |= s
            models += m
            items += i
            values += v
        return scalars, models, items, values
    if origin is Literal:
        return {type(v) for v in typing.get_args(annotation) if type(v) in (bool, int, float)}, [], [], []
    if origin in (list, tuple, set, frozenset):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return set(), [], args or [Any], []
    if origin is dict:
        args = typing.get_args(annotation)
        return set(), [], [], [args[1] if len(args) == 2 else Any]
    if annotation in (bool, int, float):
        return {annotation}, [], [], []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return set(), [annotation], [], []
    return set(), [], [], []


def value_problems(annotation, value, loc: tuple) -> list[tuple[tuple, str, Any]]:
    """(key path, message, value) where `value` breaks the number rules of a setting typed `annotation`:
    a boolean is not a number (pydantic would read `batch_size: true` as 1), a float setting is finite
    (`beta: .inf` would reach the loss), and an integer fits in 64 bits (`seed: 1e20` would reach torch)."""
    scalars, models, items, values = _shape(annotation)
    numeric = bool(scalars & {int, float})
    if isinstance(value, bool):
        if numeric and bool not in scalars:
            return [(loc, f"expected a number, got the boolean {str(value).lower()}", value)]
        return []
    if isinstance(value, float) and numeric:
        if not math.isfinite(value):
            return [(loc, f"must be a finite number, got {value}", value)]
        if float not in scalars and abs(value) > INT64_MAX:
            return [(loc, f"{value:g} is outside the 64-bit integer range", value)]
        return []
    if isinstance(value, int) and numeric and abs(value) > INT64_MAX:
        return [(loc, f"{value} is outside the 64-bit integer range", value)]
    found = []
    if isinstance(value, dict):
        for model in models:
            found += model_value_problems(model, value, loc)
        for v_ann in values:
            for k, v in value.items():
                found += value_problems(v_ann, v, loc + (k,))
    elif isinstance(value, list):
        for i_ann in items:
            for i, v in enumerate(value):
                found += value_problems(i_ann, v, loc + (i,))
    return found


def model_value_problems(model: type[BaseModel], data: dict, loc: tuple = ()) -> list[tuple[tuple, str, Any]]:
    """`value_problems` of every field of `model` present in the raw settings `data`."""
    found = []
    for name, info in model.model_fields.items():
        key = name if name in data else info.alias if info.alias in data else None
        if key is not None:
            found += value_problems(info.annotation, data[key], loc + (key,))
    return found


class NumberRules(BaseModel):
    """A settings schema whose numbers are numbers: see `value_problems` (checked on the raw settings, nested
    settings blocks included, before pydantic converts anything)."""

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data):
        if isinstance(data, dict):
            for loc, message, value in model_value_problems(cls, data):
                raise invalid(loc, message, value)
        return data
