"""One podium process per run directory: an advisory lock file, `DIR/.podium-lock`.

Two `podium run`s into the same output dir (or a `podium sft CONFIG` into a stage folder another
process is writing) would interleave checkpoints, metrics and renames. The second one stops at once:

    run dir runs/quickstart is in use by PID 4242 on host-a (podium run recipes/quickstart.yaml,
    started 2025-01-01 12:00:00)

The lock is `fcntl.flock` on the lock file, so the kernel releases it when its process dies in
any way (kill -9 included): a lock left by a dead process is never mistaken for a live one, and
a recycled PID cannot keep a run dir locked. The file itself holds who has it (JSON: pid, host,
command, started); a file still naming a process after that process is gone is the trace of a
killed run, recovered with a log line. The lock file is never deleted (a deleted and recreated
lock file would let two processes each hold a lock on a different file); a clean release empties it.

An output folder that is itself a model folder (`podium sft CONFIG --output OUT`, `podium merge CONFIG OUT`)
is locked from beside it, `.OUT.podium-lock` in its parent (`beside=True`): the published model folder
holds no lock file, and a publication that replaces the folder cannot take the lock file with it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from podium.errors import PodiumError

LOCK_FILE = ".podium-lock"
log = logging.getLogger("podium")


def describe(holder: dict) -> str:
    """'PID 4242 on host-a (podium run r.yaml, started 2025-01-01 12:00:00)' from a lock file's content."""
    what = [str(holder["command"])] if holder.get("command") else []
    if holder.get("started"):
        what.append(f"started {holder['started']}")
    host = f" on {holder['host']}" if holder.get("host") and holder.get("host") != socket.gethostname() else ""
    return f"PID {holder.get('pid', '?')}{host}" + (f" ({', '.join(what)})" if what else "")


def read_holder(fd: int) -> dict:
    """The lock file's JSON content ({} when empty or unreadable)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    try:
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


class RunDirLock:
    """`with RunDirLock(run_dir, "run"):` holds DIR/.podium-lock for the block, or raises PodiumError at once.

    `what` names the directory in messages ("run dir", "stage folder"). The folder is created if needed.
    A second RunDirLock on the same folder in the same process is refused like one in another process.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run dir", command: str | None = None,
                 beside: bool = False):
        self.folder = Path(folder)
        self.what = what
        self.beside = beside
        self.command = command if command is not None else " ".join(["podium", *sys.argv[1:]]) if sys.argv else ""
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        if self.beside:
            return self.folder.parent / f".{self.folder.name}{LOCK_FILE}"
        return self.folder / LOCK_FILE

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_NOFOLLOW: a lock file planted as a link to a file elsewhere is neither followed nor written.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PodiumError(f"{self.path} is a symbolic link; podium does not write through links in a "
                                  f"{self.what}: remove it") from None
            raise PodiumError(f"cannot create the lock file {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise PodiumError(f"cannot lock {self.path}: {e.strerror}") from None
            who = describe(holder) if holder else "another process"
            raise PodiumError(f"{self.what} {self.folder} is in use by {who}; wait for it to finish or choose "
                              "another output") from None
        previous = read_holder(fd)
        if os.fstat(fd).st_size and "pid" not in previous:
            self._close(fd)
            raise PodiumError(f"{self.path} exists and is not a podium lock file; podium will not overwrite it: "
                              "move it away")
        if previous.get("pid"):
            # The lock was free, yet the file names a holder: that process died without releasing it.
            log.warning(f"{self.what} {self.folder}: recovered the stale lock of {describe(previous)}, "
                        "which is no longer running")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        os.fsync(fd)
        self.fd = fd
        return self

    @staticmethod
    def _close(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # empty: released cleanly (a stale holder is only reported after a crash)
        finally:
            self._close(self.fd)
            self.fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
