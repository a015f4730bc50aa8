"""One source row seen through a format's column roles, with the errors and skips format readers share.

A format names the roles it reads (`prompt`, `chosen`, `messages`, ...) and where each sits in a
published row by default; a source's `columns:` moves any role to another field path
(podium.data.fields). A role the row does not hold is a `DataError` naming source, row and field;
an empty or null value is a `SkipRow`: the row is counted under its reason and not trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from podium.data.chat import json_type
from podium.data.fields import FieldError, get_field, has_field
from podium.errors import DataError

MISSING = object()


class SkipRow(Exception):
    """A row that carries nothing to train on (an empty answer, no lower-rated response): counted, not an error."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SourceRow:
    """`row` (a published record) read through `paths` (role -> field path); `where` names it in messages."""

    def __init__(self, row: dict, paths: dict[str, str], where: str, format_name: str):
        self.row, self.paths, self.where, self.format = row, paths, where, format_name

    def error(self, message: str) -> DataError:
        return DataError(f"{self.where}: {message} (format {self.format})")

    def path(self, role: str) -> str:
        return self.paths.get(role) or role

    def has(self, role: str) -> bool:
        """Whether the row holds the role's field (optional roles: `system`, `input`)."""
        return has_field(self.row, self.path(role))

    def get(self, role: str, optional: bool = False):
        """The raw value of `role`; MISSING when optional and absent; a DataError when required and absent."""
        if optional and not self.has(role):
            return MISSING
        try:
            return get_field(self.row, self.path(role))
        except FieldError as e:
            raise self.error(f"{e}; map it with `columns: {{{role}: FIELD}}`") from None

    def text(self, role: str, optional: bool = False, what: str | None = None) -> str | None:
        """A string role. Empty or null -> SkipRow (None when optional); another type -> DataError."""
        value = self.get(role, optional)
        if value is MISSING or ((value is None or value == "") and optional):
            return None
        if value is None or (isinstance(value, str) and not value.strip()):
            raise SkipRow(f"empty {what or role} ({self.path(role)})")
        if not isinstance(value, str):
            raise self.error(f"field {self.path(role)!r} must be a string (got {json_type(value)})")
        return value

    def text_or_messages(self, role: str, optional: bool = False, allow_empty: bool = False):
        """A string, or a message list as TRL's conversational records hold it.

        Empty or null -> SkipRow, or "" with `allow_empty` (a pair's completions: the pair reader counts them).
        A message that is not `{role, content}` with string content is a DataError.
        """
        value = self.get(role, optional)
        if value is MISSING:
            return None
        if isinstance(value, list):
            if (odd := next((m for m in value if not isinstance(m, dict)), None)) is not None:
                raise self.error(f"field {self.path(role)!r} must be a string or a list of {{role, content}} messages "
                                 f"(got a list of {json_type(odd)})")
            for i, m in enumerate(value):
                if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
                    raise self.error(f"{self.path(role)}[{i}] must be a {{role, content}} message")
                if not isinstance(m["content"], str):
                    raise self.error(f"{self.path(role)}[{i}].content must be a string (got {json_type(m['content'])})")
            empty = not value or any(not m["content"].strip() for m in value if m["role"] == "assistant")
            if empty and not allow_empty:
                raise SkipRow(f"empty {role} ({self.path(role)})")
            return [{"role": m["role"], "content": m["content"]} for m in value]
        if allow_empty and (value is None or value == ""):
            return ""
        if value is not None and not isinstance(value, str):
            raise self.error(f"field {self.path(role)!r} must be a string or a list of {{role, content}} messages "
                             f"(got {json_type(value)})")
        return self.text(role, optional)

    def number(self, role: str, optional: bool = False) -> float | None:
        value = self.get(role, optional)
        if value is MISSING or value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise self.error(f"field {self.path(role)!r} must be a number (got {json_type(value)} {value!r:.40})") from None

    def items(self, role: str) -> list:
        value = self.get(role)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"field {self.path(role)!r} must be a list (got {json_type(value)})")
        return value


@dataclass(frozen=True)
class ReadSettings:
    """What a reader needs beyond the row: conversation keys and role names, and a per-row seed."""

    role_key: str | None = None
    content_key: str | None = None
    roles: dict[str, str] | None = None
    chat_template: bool = True
    seed: int = 0
    index: int = 0


@dataclass(frozen=True)
class Format:
    """A named format: the roles it reads (default field paths) and its reader(row, use, settings) -> record."""

    name: str
    roles: dict[str, str]  # role -> default field path
    read: Callable[[SourceRow, str, ReadSettings], dict]
    optional: tuple[str, ...] = ("system",)  # roles read when present


def with_system(row: SourceRow, prompt):
    """The prompt (string or turns) with the row's optional system prompt as its first turn."""
    system = row.text("system", optional=True)
    turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if system is None or (turns and turns[0]["role"] == "system"):
        return prompt
    return [{"role": "system", "content": system}, *turns]
