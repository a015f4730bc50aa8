"""Helpers of the hardening tests: a time bound that fails a test instead of hanging it; a FIFO planted as a file."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path


class Hung(Exception):
    """The code under test ran past its bound (it would have hung or spun)."""


@contextmanager
def time_bound(seconds: float):
    """Raise `Hung` inside the block after `seconds` of wall time (SIGALRM: main thread, Unix only).

    A blocking open() of a FIFO or an endless read of /dev/zero is interrupted too: the handler's exception
    propagates out of the interrupted system call."""

    def expire(signum, frame):
        raise Hung(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def plant_fifo(path: Path) -> Path:
    """A named pipe at `path` that nobody writes: opening it for reading blocks forever."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path
