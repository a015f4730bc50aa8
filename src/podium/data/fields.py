"""Field paths into nested rows: `question`, `choices.text`, `answers[*].text`, `chatgpt_answers[0]`.

Hub datasets nest their fields (ARC's `choices` is a dict of lists, stack-exchange-preferences'
`answers` a list of dicts, HC3's answers lists of strings), and a recipe's `columns:` names them with
a path:

- `a.b`      key `b` of the mapping under `a` (on a list of mappings: `b` of each, as `a[*].b`);
- `a[N]`     item N of the list `a` (negative counts from the end);
- `a[*].b`   `b` of every item of the list `a`, a list.

A key that the row does not have is a schema problem (`FieldError`, naming the path and what the row
holds); an index past the end of a list (HC3 rows with no ChatGPT answer) is a missing value, `None`,
which the format readers count and skip rather than train on.
"""

from __future__ import annotations

import re
from functools import lru_cache

from podium.data.chat import json_type

STEP = re.compile(r"\.?([^.\[\]]+)|\[(\*|-?\d+)\]")


class FieldError(Exception):
    """A field path the row cannot follow: the message says which step and what the row holds there."""


@lru_cache(maxsize=256)
def parse_path(path: str) -> tuple:
    """`"answers[*].text"` -> `("answers", "*", "text")`; indices become ints. A malformed path is a ValueError."""
    steps, pos = [], 0
    while pos < len(path):
        m = STEP.match(path, pos)
        if m is None or (pos == 0 and path.startswith(".")):
            raise ValueError(f"field path {path!r}: cannot read it from column {pos + 1} "
                             "(write keys as a.b, list items as a[0] or a[*])")
        key, index = m.groups()
        steps.append(key if key is not None else ("*" if index == "*" else int(index)))
        pos = m.end()
    if not steps:
        raise ValueError("field path is empty")
    return tuple(steps)


def path_problem(path: str) -> str | None:
    """Why `path` is not a field path (for config validation), or None."""
    try:
        parse_path(path)
    except ValueError as e:
        return str(e)
    return None


def _keys(value) -> str:
    keys = [str(k) for k in value if not str(k).startswith("_")]  # not podium's own `_source`
    return ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")


def get_field(row: dict, path: str):
    """The value at `path` in `row` (see the module docstring); FieldError when a key is missing."""
    steps = parse_path(path)
    return _follow(row, steps, path, 0)


def has_field(row: dict, path: str) -> bool:
    """Whether `row` has the first key of `path` (a cheap test for optional fields such as `system`)."""
    first = parse_path(path)[0]
    return isinstance(row, dict) and isinstance(first, str) and first in row


def _follow(value, steps: tuple, path: str, i: int):
    if i == len(steps):
        return value
    step = steps[i]
    done = ".".join(str(s) for s in steps[:i]) or "the row"
    if step == "*":
        if value is None:
            return None
        if not isinstance(value, list):
            raise FieldError(f"field {path!r}: {done} is {json_type(value)}, not a list")
        return [_follow(item, steps, path, i + 1) for item in value]
    if isinstance(step, int):
        if value is None:
            return None
        if not isinstance(value, list):
            raise FieldError(f"field {path!r}: {done} is {json_type(value)}, not a list")
        return _follow(value[step], steps, path, i + 1) if -len(value) <= step < len(value) else None
    if isinstance(value, list) and i > 0:  # `choices.text` on a list of mappings: each item's key
        return [_follow(item, steps, path, i) for item in value]
    if value is None and i > 0:
        return None
    if not isinstance(value, dict):
        raise FieldError(f"field {path!r}: {done} is {json_type(value)}, not a mapping with key {step!r}")
    if step not in value:
        where = "the row" if i == 0 else f"{done}"
        raise FieldError(f"missing field {path!r} ({where} has {_keys(value) or 'no fields'})")
    return _follow(value[step], steps, path, i + 1)
