"""Typed references in stage configs: which settings name a model, a dataset or an input file.

A stage config declares them by type, so the pipeline (relative paths, input hashes), the Hub
preflight (podium.hub) and model cards (base models, datasets) read them from the schema instead
of guessing from key names or from what a string looks like::

    class SFTConfig(StageConfig):
        model: ModelRef            # a model folder or Hub id ("@stage" in a recipe)
        data: DataSpec             # a dataset, or a mixture of sources (each source's `path`)

`iter_refs(Config, data)` walks a config's raw settings along its schema and yields every
reference with its key path. A field whose value is a foreign format (a mergekit config) declares
a `find` function that yields the references inside it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel

RefKindName = Literal["model", "dataset", "file"]
Found = Iterator[tuple[tuple, str]]  # (key path below the field, referenced string)


@dataclass(frozen=True)
class RefKind:
    """Metadata of a reference field. `find(value)` yields (sub key path, string) for structured values."""

    kind: RefKindName
    find: Callable[[Any], Found] | None = None


def mixture_paths(value) -> Found:
    """The dataset references of a `podium.data.mixture` spec: a path/id, a source mapping, or a list of either."""
    if isinstance(value, str):
        yield (), value
    elif isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield ("path",), value["path"]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for sub, found in mixture_paths(item):
                yield (i, *sub), found


ModelRef = Annotated[str, RefKind("model")]  # a model folder or Hub model id
DataRef = Annotated[str, RefKind("dataset")]  # a JSONL file, a saved dataset folder or a Hub dataset id
DataSpec = Annotated[str | list | dict, RefKind("dataset", mixture_paths)]  # a dataset or a mixture of sources
FileRef = Annotated[str, RefKind("file")]  # a local input file or folder (a merge config, task YAMLs)


def _ref_kind(annotation) -> RefKind | None:
    """The RefKind an annotation carries (also inside `X | None` and `list[X]`)."""
    if typing.get_origin(annotation) is Annotated:
        found = [m for m in typing.get_args(annotation)[1:] if isinstance(m, RefKind)]
        if found:
            return found[0]
        return _ref_kind(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        kinds = [k for a in typing.get_args(annotation) if (k := _ref_kind(a)) is not None]
        return kinds[0] if kinds else None
    if typing.get_origin(annotation) is list:
        return _ref_kind(typing.get_args(annotation)[0]) if typing.get_args(annotation) else None
    return None


def each_string(value) -> Found:
    """The default `find`: the value itself when it is a string, or each string of a list."""
    if isinstance(value, str):
        yield (), value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield (i,), item


def _nested_model(annotation) -> type[BaseModel] | None:
    """The config class of a nested settings block (`judge: JudgeSpec`, `lora: LoraSettings | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (model := _nested_model(arg)) is not None:
            return model
    return None


def iter_refs(schema: type[BaseModel], data: dict) -> Iterator[tuple[tuple, RefKindName, str]]:
    """(key path, kind, value) of every reference in `data`, the raw settings of config class `schema`.

    Works on raw settings (before or without validation), so a stored stage config or a recipe
    stage can be read without running the schema's validators. Unknown keys are skipped.
    """
    if not isinstance(data, dict):
        return
    for name, info in schema.model_fields.items():
        names = [name, info.alias, *getattr(info.validation_alias, "choices", [info.validation_alias])]
        key = next((n for n in names if isinstance(n, str) and n in data), None)
        if key is None or data[key] is None:
            continue
        value = data[key]
        kind = _ref_kind(info.annotation) or next((m for m in info.metadata if isinstance(m, RefKind)), None)
        if kind is not None:
            for sub, text in (kind.find or each_string)(value):
                yield (key, *sub), kind.kind, text
        elif (nested := _nested_model(info.annotation)) is not None and isinstance(value, dict):
            for path, sub_kind, text in iter_refs(nested, value):
                yield (key, *path), sub_kind, text
