"""Atomic publication of an output folder: write beside it, swap with one rename, clean up after killed runs.

At every instant the output folder `out` holds either its complete old contents or the complete
new ones, whatever kills the process (kill -9, power loss aside: no fsync):

1. `staging(out)` first checks that `out` can be written (not a file, not read-only, not the current
   folder), puts back or deletes what killed runs left beside it, then creates a temp folder
   `.NAME.podium-tmp-HOST-PID-RANDOM` next to `out` (same filesystem, unique per process).
2. The caller writes the new contents into the temp folder.
3. `publish_folder(tmp, out)` carries every entry of the old `out` that the new contents do not
   replace into the temp folder as hard links (no data copied; a copy where links are impossible),
   except files matching `stale_globs` (the old model's files: `MODEL_FILES`) that podium published
   there itself: each publication lists its entries in `.podium-published`, so a `vocab.txt` or a
   `tokenizer_utils.py` of the user's is never deleted (a stage folder from before that list counts as
   podium's). So a stage folder keeps the pipeline's `stage.json`, `metrics.jsonl`, samples and logs next
   to the new weights. Then the two folders are swapped in one step (Linux renameat2 RENAME_EXCHANGE)
   and the old contents, now at the temp path, are deleted.

Where the kernel or filesystem cannot exchange, two renames are used (out -> .NAME.podium-old-...,
temp -> out); a run killed between them leaves no `out`, and the next `staging(out)` renames the
old folder back. Temp folders of dead processes (same host, PID gone) are deleted by the next run.
Two processes publishing into the same `out` at once both succeed and `out` ends complete (one of
them): a publication that finds `out` created since it looked swaps instead of renaming. Entries written
into `out` by another process between step 3's carry and its swap would be lost: commands lock the
folders they write (podium.run_lock), so podium writes a folder from one process at a time.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from podium.errors import PodiumError
from podium.rundir import made_by_podium

TMP, OLD = "podium-tmp", "podium-old"
PUBLISHED = ".podium-published"  # the entries the last publication put into the folder (JSON list)
# The files that make up a model folder (weights, config, tokenizer): replaced as a set, so an old
# sharded model or an old tokenizer leaves no stray files beside the new ones.
MODEL_FILES = ("model*.safetensors*", "pytorch_model*.bin*", "config.json", "generation_config.json",
               "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
               "chat_template.jinja")
# What to fetch of a Hub model repo: its weights (safetensors only), configs and tokenizer files.
HUB_MODEL_PATTERNS = ["*.safetensors", "*.json", "tokenizer*", "*.model", "*.txt", "*.jinja"]
RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _host() -> str:
    return socket.gethostname().replace("-", "_").replace(".", "_") or "host"


def sibling(out: Path, kind: str) -> Path:
    """A unique name beside `out`: `.NAME.KIND-HOST-PID-RANDOM`."""
    return out.parent / f".{out.name}.{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _owner_dead(name: str, prefix: str) -> bool:
    """True when the folder `name` (`PREFIX-HOST-PID-RANDOM`) was made by a process of this host that is gone."""
    parts = name[len(prefix):].split("-")
    if len(parts) != 4 or parts[1] != _host() or not parts[2].isdigit():
        return False
    return not pid_alive(int(parts[2]))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (this process counts as alive; another user's process too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(out: str | os.PathLike) -> list[Path]:
    """Undo or clean what killed runs left beside `out`; returns the paths removed or restored.

    A `.NAME.podium-old-*` folder of a dead process while `out` is missing is the complete old
    output of a run killed between its two renames: it is renamed back. Other temp folders of dead
    processes are deleted, and so are the fixed-name temps of older podium versions.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    done = []
    tmp_prefix, old_prefix = f".{out.name}.{TMP}", f".{out.name}.{OLD}"
    entries = sorted(out.parent.iterdir(), key=_mtime, reverse=True)
    for p in entries:
        if p.name.startswith(old_prefix) and _owner_dead(p.name, old_prefix) and not out.exists():
            os.rename(p, out)
            done.append(out)
    for p in entries:
        dead = ((p.name.startswith(tmp_prefix) and _owner_dead(p.name, tmp_prefix))
                or (p.name.startswith(old_prefix) and p.exists() and _owner_dead(p.name, old_prefix))
                or _legacy_temp(p.name, out.name))
        if dead and p.exists():
            _remove(p)
            done.append(p)
    return done


def _mtime(p: Path) -> float:
    """`p`'s modification time, 0 when it is gone: another process publishing beside `out` renames and removes its
    own temp folders between our listing and our look (checking `exists()` first still left that window)."""
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _legacy_temp(name: str, out_name: str) -> bool:
    """Temps of podium before atomic publication: `.NAME.tmp-merge-PID` and the fixed `NAME.tmp-save`."""
    if name == f"{out_name}.tmp-save":
        return True
    prefix = f".{out_name}.tmp-merge-"
    return name.startswith(prefix) and name[len(prefix):].isdigit() and not pid_alive(int(name[len(prefix):]))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def name_problem(out: str | os.PathLike) -> str | None:
    """Why the names podium derives from `out` would not fit the filesystem (its temp and lock siblings are
    longer than the folder's own name), or None. Checked before any work: a long name used to fail at publish."""
    out = Path(os.path.abspath(out))
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        name_max, path_max = os.pathconf(parent, "PC_NAME_MAX"), os.pathconf(parent, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    longest = f".{out.name}.{OLD}-{_host()}-{'9' * 7}-{'f' * 8}"
    size = len(out.name.encode())
    shown = out.name if size <= 40 else out.name[:40] + "..."
    if len(longest.encode()) > name_max:
        extra = len(longest.encode()) - size
        return (f"the name {shown!r} ({size} bytes) is too long for {out.parent}: podium writes beside it under names "
                f"{extra} bytes longer, and this filesystem allows {name_max}; use a name of at most "
                f"{max(name_max - extra, 0)} bytes")
    if len(str(out.parent / longest).encode()) >= path_max:
        return f"the path {str(out)[:60]!r}... is too long for this filesystem ({path_max} bytes with podium's temp names)"
    return None


def check_writable(out: str | os.PathLike) -> None:
    """Raise a PodiumError unless `out` can be created or replaced (checked before any work is done)."""
    if problem := name_problem(out):
        raise PodiumError(f"output {problem}")
    out = Path(out).resolve()
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise PodiumError(f"output {out} is the current folder or contains it; it is replaced as a whole when "
                          "published, so write into a subfolder")
    if out.exists() and not out.is_dir():
        raise PodiumError(f"output {out} exists and is not a folder; choose another output path")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PodiumError(f"output {out}: {parent} is a file, not a folder")
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise PodiumError(f"output folder {out} is not writable (read-only folder or file system)")


@contextmanager
def staging(out: str | os.PathLike, stale_globs: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh temp folder beside `out`; publish it to `out` when the block ends without error.

    Every check that can fail on the output path runs on entry, before the caller computes
    anything. On an exception (Ctrl-C included) the temp folder is removed and `out` is untouched.
    A symlinked `out` is followed: the folder it points to is the one replaced.
    """
    out = Path(out).resolve()
    check_writable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PodiumError(f"output {out}: cannot create {out.parent} ({e.strerror})") from None
    recover(out)
    tmp = sibling(out, TMP)
    try:
        tmp.mkdir()
    except OSError as e:
        raise PodiumError(f"output {out}: cannot write in {out.parent} ({e.strerror})") from None
    try:
        yield tmp
        publish_folder(tmp, out, stale_globs)
    except BaseException:
        _remove(tmp)
        raise


def publish_folder(tmp: str | os.PathLike, out: str | os.PathLike, stale_globs: tuple[str, ...] = ()) -> Path:
    """Replace `out` by the finished folder `tmp` in one atomic step, keeping `out`'s other entries.

    Entries of `out` that `tmp` lacks are carried over (hard links), except files matching
    `stale_globs`; `tmp` must be a sibling of `out` (same filesystem). `tmp` is gone afterwards.
    """
    tmp, out = Path(tmp), Path(out).resolve()
    new = {p.name for p in tmp.iterdir()} - {PUBLISHED}
    (tmp / PUBLISHED).write_text(json.dumps(sorted(new)) + "\n")
    if not out.exists():
        try:
            os.rename(tmp, out)
            return out
        except OSError as e:  # another process published `out` since it was checked: swap with it instead
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not out.is_dir():
                raise
    if not out.is_dir():
        raise PodiumError(f"output {out} exists and is not a folder")
    owned = published_by_podium(out)
    stale = {p.name for pattern in stale_globs for p in out.glob(pattern)} & owned
    for entry in out.iterdir():
        if entry.name not in new and entry.name not in stale:
            _link_tree(entry, tmp / entry.name)
    if exchange(tmp, out):
        _remove(tmp)  # the old contents
        return out
    old = sibling(out, OLD)
    os.rename(out, old)
    os.rename(tmp, out)
    _remove(old)
    return out


def published_by_podium(out: Path) -> set[str]:
    """The entries of `out` that podium published there: its `.podium-published` list; for a stage folder from
    before that list, every entry (podium made the folder); for any other folder, none."""
    try:
        listed = json.loads((out / PUBLISHED).read_text())
    except (OSError, ValueError):
        listed = None
    if isinstance(listed, list):
        return {name for name in listed if isinstance(name, str)}
    return {p.name for p in out.iterdir()} if made_by_podium(out) else set()


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 / musl >= 1.2.? : no wrapper to call
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE). False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the filesystem (or an old kernel) cannot exchange: fall back to two renames
    raise OSError(err, f"exchanging {a} and {b}: {os.strerror(err)}")
