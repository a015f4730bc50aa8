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

One lock per folder, whoever writes it. A stage folder is a model folder too, so a running recipe holds
both its run dir's lock and the beside-lock of every stage folder it will write (`folder_locks`), and a
command run alone (`podium sft`, `podium merge`, any stage kind) takes the beside-lock of its output and
checks that no folder above it is held (`check_enclosing`): a stage folder of a run dir in use is refused
("... lies inside run dir DIR, which is in use by PID ..."), and a run is refused while a command run alone
writes one of its stage folders. `podium card` and `podium report` take the run dir's own lock.
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
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from podium.errors import PodiumError

LOCK_FILE = ".podium-lock"
log = logging.getLogger("podium")
_held_here: set[str] = set()  # lock files this process holds (an enclosing lock of its own is not a conflict)


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
        _held_here.add(str(self.path))
        return self

    @staticmethod
    def _close(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        _held_here.discard(str(self.path))
        try:
            os.ftruncate(self.fd, 0)  # empty: released cleanly (a stale holder is only reported after a crash)
        finally:
            self._close(self.fd)
            self.fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_files_of(folder: Path) -> list[tuple[Path, str]]:
    """The lock files that can hold `folder` (its own `.podium-lock`, its beside-lock), with what they lock."""
    return [(folder / LOCK_FILE, "run dir"), (folder.parent / f".{folder.name}{LOCK_FILE}", "output folder")]


def holder_of(lock_file: Path) -> dict | None:
    """Who holds `lock_file` now (its recorded holder, {} when unknown), or None when it is free or absent."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return read_holder(fd)
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_enclosing(folder: str | os.PathLike, what: str = "output", itself: bool = True) -> None:
    """Raise a PodiumError when a folder that contains `folder` is locked by a podium process (a run dir in use,
    a merge or stage output being written): `folder` is that process's to write. With `itself`, a run dir's
    lock inside `folder` counts too (a command run alone must not write into a run dir in use)."""
    folder = Path(folder).resolve()
    candidates = [(folder / LOCK_FILE, "run dir", folder)] if itself else []
    candidates += [(lock_file, kind, above) for above in folder.parents for lock_file, kind in lock_files_of(above)]
    for lock_file, kind, above in candidates:
        if str(lock_file) in _held_here:
            continue
        holder = holder_of(lock_file)
        if holder is not None:
            who = describe(holder) if holder else "another process"
            where = "is a run dir" if above == folder else f"lies inside {kind} {above}, which is"
            raise PodiumError(f"{what} {folder} {where} in use by {who}; wait for it to finish or choose another "
                              "output")


@contextmanager
def folder_locks(folders: Iterable[str | os.PathLike], what: str = "stage folder") -> Iterator[None]:
    """Hold the beside-lock of every folder in `folders` for the block (a run: each stage folder it writes)."""
    with ExitStack() as stack:
        for folder in folders:
            stack.enter_context(RunDirLock(Path(folder), what, beside=True))
        yield


def run_dir_lock(run_dir: str | os.PathLike, command: str | None = None) -> RunDirLock:
    """The lock `podium card` and `podium report` take on the run dir they write into: the run's own lock
    (a run in progress refuses them), after checking that no folder above it is held (a multi-seed run)."""
    run_dir = Path(run_dir).resolve()
    check_enclosing(run_dir, "run dir", itself=False)
    return RunDirLock(run_dir, "run dir", command=command)


def output_lock(folder: str | os.PathLike, what: str = "output folder") -> RunDirLock:
    """The lock a command run alone takes on the folder it writes (enter it with `with`): the folder's
    beside-lock, after checking that no enclosing folder is held (`check_enclosing`)."""
    folder = Path(folder).resolve()
    check_enclosing(folder, what)
    return RunDirLock(folder, what, beside=True)
