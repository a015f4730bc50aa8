"""Content fingerprints: what a file or folder holds, not when it was written.

A stage's key includes the fingerprint of each local file or folder it reads, and a finished stage
records the digest of every file it wrote (its manifest, in `.podium-done`), checked before the stage
is reused. Names, sizes and modification times are not content: `cp -p`, `touch -r` or an editor that
keeps the size would leave them equal while the bytes change. So every file is hashed (SHA-256).

Hashing a 140 GB model takes minutes, so a file's digest is remembered, keyed by what changes whenever
its bytes can have changed: device, inode, size, modification time and change time (ctime). ctime is
set by the kernel on every write or metadata change and cannot be set back from user space, so a
rewrite that restores the mtime (`touch -r`) or a copy that keeps it (`cp -p`: a new inode) misses the
memo and is hashed again. A file changed within `RACY_SECONDS` of being hashed is not remembered (its
timestamps could still match a later write within the same clock tick, git's "racily clean" case).
Memo entries live in `$PODIUM_CACHE/fingerprints` and are authenticated (podium.cache_auth): an edited
entry is ignored and the file rehashed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from pathlib import Path

from podium.cache_auth import cache_root, sign, verify
from podium.errors import PodiumError
from podium.limits import kind_of, open_regular

RACY_SECONDS = 2.0
ANNOUNCE_BYTES = 1 << 30  # hashing more than this is logged (it takes seconds)
log = logging.getLogger("podium")
_memo: dict[tuple, str] = {}  # in-process memo, same key as the on-disk one


def memo_dir() -> Path:
    return cache_root() / "fingerprints"


def _memo_key(real: str, st: os.stat_result) -> tuple:
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _memo_file(key: tuple) -> Path:
    name = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    return memo_dir() / name[:2] / f"{name}.json"


def _recall(key: tuple) -> str | None:
    if key in _memo:
        return _memo[key]
    try:
        entry = json.loads(_memo_file(key).read_text())
    except (OSError, ValueError):
        return None
    digest = entry.get("digest") if isinstance(entry, dict) else None
    if isinstance(digest, str) and verify(entry.get("mac"), json.dumps(key), digest):
        _memo[key] = digest
        return digest
    return None


def _remember(key: tuple, digest: str, st: os.stat_result) -> None:
    if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < RACY_SECONDS:
        return  # could still change within the same timestamp tick
    _memo[key] = digest
    path = _memo_file(key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"digest": digest, "mac": sign(json.dumps(key), digest)}))
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache only costs a rehash next time
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a regular file's bytes, remembered by (device, inode, size, mtime, ctime).

    A FIFO, device or socket is a PodiumError (never opened for a blocking read)."""
    with open_regular(path, PodiumError, what="file") as f:
        st = os.fstat(f.fileno())
        key = _memo_key(os.path.realpath(path), st)
        if (known := _recall(key)) is not None:
            return known
        if st.st_size > ANNOUNCE_BYTES:
            log.info(f"fingerprinting {path} ({st.st_size / 1e9:.1f} GB) by content, once (then remembered)")
        digest = _sha256(f)
        after = os.fstat(f.fileno())
    if _memo_key(key[0], after) == key:  # unchanged while it was read
        _remember(key, digest, after)
    return digest


def _sha256(f) -> str:
    h, buf = hashlib.sha256(), bytearray(1 << 20)
    view = memoryview(buf)
    while n := f.readinto(buf):
        h.update(view[:n])
    return h.hexdigest()


def folder_files(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """(relative path, path) of every file under `folder`, sorted; symbolic links are followed (a Hub cache
    snapshot is links to blobs), each real folder visited once. Entries named in `exclude` (at the top) are
    left out; a FIFO, device or socket is a PodiumError."""
    root = Path(folder)
    out, seen = [], set()

    def walk(d: Path, rel: str) -> None:
        st = d.stat()
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            name = f"{rel}{entry.name}"
            if not rel and entry.name in exclude:
                continue
            try:
                est = os.stat(entry.path)
            except OSError:
                raise PodiumError(f"{entry.path}: a broken symbolic link or an unreadable entry") from None
            if stat.S_ISDIR(est.st_mode):
                walk(Path(entry.path), f"{name}/")
            elif stat.S_ISREG(est.st_mode):
                out.append((name, Path(entry.path)))
            else:
                raise PodiumError(f"{entry.path}: is {kind_of(est.st_mode)}, not a regular file; podium reads only "
                                  "regular files")

    walk(root, "")
    return out


def fingerprint(path: str | os.PathLike) -> str:
    """Content fingerprint of a file (its SHA-256) or a folder (SHA-256 over each file's relative path and
    digest, so renames and moves count as changes too)."""
    p = Path(path)
    if not p.is_dir():
        return file_sha256(p)
    h = hashlib.sha256()
    for rel, file in folder_files(p):
        h.update(f"{rel}\0{file_sha256(file)}\n".encode())
    return h.hexdigest()


def manifest(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> dict[str, list]:
    """{relative path: [size, sha256]} of every file under `folder` but `exclude`: what a finished stage wrote."""
    return {rel: [file.stat().st_size, file_sha256(file)] for rel, file in folder_files(folder, exclude)}


def manifest_problem(folder: str | os.PathLike, recorded: dict) -> str | None:
    """How `folder` differs from the manifest `recorded` when it was finished (None: every file is as it was).

    Files added since are allowed (logs, a card); a file missing, resized or with other bytes is not."""
    folder = Path(folder)
    for rel, entry in sorted(recorded.items()):
        if not (isinstance(entry, list) and len(entry) == 2):
            return f"its manifest entry for {rel} is damaged"
        size, digest = entry
        p = folder / rel
        try:
            st = p.stat()
        except OSError:
            return f"{rel} is missing"
        if not stat.S_ISREG(st.st_mode):
            return f"{rel} is no longer a regular file"
        if st.st_size != size:
            return f"{rel} has {st.st_size} bytes, {size} when the stage finished"
        try:
            if file_sha256(p) != digest:
                return f"the content of {rel} changed (same size)"
        except PodiumError as e:
            return str(e)
    return None
