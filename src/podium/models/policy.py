"""What a run allows when it loads models: remote code (`trust_remote_code`) and pickled weights
(`allow_pickle`), both off unless the recipe's top level turns them on.

The policy is an immutable `SecurityPolicy` held in a context variable: `security_policy(...)` sets it for a
block (the pipeline around each stage, the distributed worker around its rank's stage) and restores the
previous one afterwards; `current_policy()` reads it. A loader given an explicit setting uses that instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class SecurityPolicy:
    trust_remote_code: bool = False
    allow_pickle: bool = False


DEFAULT_POLICY = SecurityPolicy()  # neither remote code nor pickled weights
_CURRENT: ContextVar[SecurityPolicy | None] = ContextVar("podium_security_policy", default=None)


def current_policy() -> SecurityPolicy:
    """The policy in force here (`DEFAULT_POLICY` outside any `security_policy` block)."""
    return _CURRENT.get() or DEFAULT_POLICY


@contextmanager
def security_policy(trust_remote_code: bool = False, allow_pickle: bool = False) -> Iterator[SecurityPolicy]:
    """Inside the block models load under this policy; the previous one is restored afterwards."""
    policy = SecurityPolicy(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    token = _CURRENT.set(policy)
    try:
        yield policy
    finally:
        _CURRENT.reset(token)
