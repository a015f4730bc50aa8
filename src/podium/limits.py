"""Bounds on what podium reads: every input is a regular file of bounded size, read in bounded pieces.

A recipe, a config, a JSONL data file or a results file could be `/dev/zero`, a FIFO that never
ends, a 200 MB single line (12.5 GB of Python objects once parsed) or a 3000-deep YAML nesting.
Each is refused before it is read in full, with a message that names the file, the limit and the
environment variable that raises it:

    data/big.jsonl:1: a line longer than 16 MiB (the limit on one JSONL record); podium reads at most that
    much per line: raise it with PODIUM_MAX_JSONL_LINE_MB=64 if the record is meant to be this large

Non-regular files (FIFOs, character devices such as /dev/zero, sockets) are refused without opening
them for a blocking read: `open_regular` opens with O_NONBLOCK and checks the opened file itself, so a
path swapped for a FIFO between a check and the open cannot hang the process.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

from podium.errors import PodiumError

MiB = 1 << 20


@dataclass(frozen=True)
class Limit:
    """A size (or count) bound with its default and the environment variable that raises it."""

    what: str  # "one JSONL record", "a YAML file"
    default: int
    env: str
    unit: int = MiB  # the environment variable is read in this unit (MiB for sizes, 1 for counts)

    @property
    def value(self) -> int:
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = float(raw)
        except ValueError:
            raise PodiumError(f"{self.env}={raw!r}: expected a number") from None
        if not value > 0:
            raise PodiumError(f"{self.env}={raw!r}: expected a number > 0")
        return int(value * self.unit)

    def shown(self, value: int | None = None) -> str:
        value = self.value if value is None else value
        if self.unit == MiB:
            return f"{value / MiB:g} MiB" if value >= MiB else f"{value:,} bytes"
        return f"{value:,}"

    def raise_hint(self) -> str:
        suggestion = max(1, int(self.value * 4 / self.unit))
        return f"raise it with {self.env}={suggestion} if the input is meant to be this large"


JSONL_LINE = Limit("one JSONL record (line)", 16 * MiB, "PODIUM_MAX_JSONL_LINE_MB")
JSONL_FILE = Limit("a JSONL or JSON data file", 8192 * MiB, "PODIUM_MAX_DATA_FILE_MB")
YAML_FILE = Limit("a YAML recipe or config file", 4 * MiB, "PODIUM_MAX_YAML_MB")
YAML_DEPTH = Limit("the nesting depth of a YAML document", 64, "PODIUM_MAX_YAML_DEPTH", unit=1)
JSON_FILE = Limit("a JSON results or annotations file", 1024 * MiB, "PODIUM_MAX_JSON_MB")
SOURCE_ROWS = Limit("the rows drawn from one data source (`count`)", 10_000_000, "PODIUM_MAX_SOURCE_ROWS", unit=1)

FILE_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
              stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def kind_of(mode: int) -> str:
    return FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")


NAME_MAX, PATH_MAX = 255, 4095  # Linux's limits on one path component and a whole path (bytes)


def path_text_problem(value: str) -> str | None:
    """Why `value` cannot name a file at all (a NUL byte, a component or a whole path longer than the system
    allows), or None. Checked before any file system call: pathlib raises on such names instead of saying no."""
    if "\0" in value:
        return "contains a NUL byte"
    try:
        encoded = os.fsencode(value)
    except UnicodeError:
        return "is not a valid file name"
    if len(encoded) > PATH_MAX:
        return f"is {len(encoded)} bytes long, longer than a path may be ({PATH_MAX})"
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        return f"has a component longer than a file name may be ({NAME_MAX} bytes)"
    return None


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file podium may read (None when it is). Never opens the file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return f"is {kind_of(st.st_mode)}, not a regular file; podium reads only regular files"
    return None


def open_regular(path: str | os.PathLike, error: type[PodiumError] = PodiumError, what: str = "file") -> BinaryIO:
    """Open `path` for reading in binary mode, refusing anything that is not a regular file (without blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path}: is a folder, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: is {kind_of(st.st_mode)}, not a regular file; podium reads only regular files")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_size(f: BinaryIO, path, limit: Limit, error: type[PodiumError] = PodiumError) -> int:
    """The size of the open file `f`; an error naming `limit` when it is larger."""
    size = os.fstat(f.fileno()).st_size
    if size > limit.value:
        raise error(f"{path}: {size / MiB:.1f} MiB is over the limit on {limit.what} ({limit.shown()}); "
                    f"{limit.raise_hint()}")
    return size


def read_bounded(path: str | os.PathLike, limit: Limit, error: type[PodiumError] = PodiumError,
                 what: str = "file") -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (an error naming the limit otherwise)."""
    with open_regular(path, error, what) as f:
        check_size(f, path, limit, error)
        data = f.read(limit.value + 1)  # a file that grew after the check is still read only this far
    if len(data) > limit.value:
        raise error(f"{path}: over the limit on {limit.what} ({limit.shown()}); {limit.raise_hint()}")
    return data


def bounded_lines(f: BinaryIO, path, limit: Limit = JSONL_LINE, error: type[PodiumError] = PodiumError):
    """(line number, raw line) of an open file, each line read with at most `limit` bytes in memory."""
    cap = limit.value
    lineno = 0
    while True:
        raw = f.readline(cap + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > cap and not (len(raw) == cap + 1 and raw.endswith(b"\n")):
            raise error(f"{path}:{lineno}: a line longer than {limit.shown()} (the limit on {limit.what}); podium "
                        f"reads at most that much per line: {limit.raise_hint()}")
        yield lineno, raw


def read_json_bounded(path: str | os.PathLike, error: type[PodiumError] = PodiumError, limit: Limit = JSON_FILE,
              what: str = "JSON file"):
    """The parsed content of a bounded regular JSON file; an `error` naming the file (and line) otherwise."""
    data = read_bounded(path, limit, error, what)
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None
