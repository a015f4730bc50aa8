"""What podium may write: new folders, folders it made, and files it wrote; never the user's, never its inputs.

Folders. A command that writes a folder (`podium merge CFG OUT`, `podium sft CONFIG --output OUT`, any stage
kind alone) writes either a new (or empty) folder or one podium made: a folder holding podium's `stage.json`,
as a recipe's stage folders do. The command writes that marker before any other file (`claim_folder`), and
the completion marker with the manifest of what it wrote last (podium.rundir). An existing folder without
it is the user's: refused, naming the files that make it so, unless `--overwrite` says to write into it on
purpose; then podium replaces the files it writes and deletes nothing else (podium.models.publish deletes
only model files it published itself, listed in `.podium-published`).

Inputs. An output that is, contains or lies inside one of the command's inputs (merge into one of its own
models, `podium sft` into its base model's folder) is refused before any work (`overlap_problem`).

Files. A single-file output (`--output FILE` of card, eval, leaderboard, winrate) never replaces a file
podium did not write: podium records each file it writes, with the SHA-256 of its content, in
`.podium-files.json` in the same folder, and replaces an existing file only when that record matches it
(it wrote the file and nobody changed it since) or with `--overwrite`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from podium.errors import PodiumError
from podium.files import write_json, write_text
from podium.models.publish import PUBLISHED, name_problem
from podium.run_lock import output_lock
from podium.rundir import STAGE_FILE, StageRecord, made_by_podium, write_stage_done

FILES_RECORD = ".podium-files.json"
OVERWRITE_FLAG = "--overwrite"
# Entries podium itself leaves in a folder it is about to write (a lock or temp beside a model: not the user's).
PODIUM_ENTRIES = (".podium-lock", FILES_RECORD, ".podium-published")


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def local_inputs(values: Iterable[str]) -> list[Path]:
    """The existing local paths among `values` (each part of a `BASE+LORA` reference), resolved."""
    out = []
    for value in values:
        for part in str(value).split("+"):
            if part and os.path.exists(os.path.expanduser(part)):
                out.append(_resolved(part))
    return out


def overlap_problem(output: str | os.PathLike, inputs: Iterable[str], what: str = "output") -> str | None:
    """Why `output` may not be written: it is, contains or lies inside one of the existing local `inputs`."""
    out = _resolved(output)
    for inp in local_inputs(inputs):
        if out == inp:
            relation = "is"
        elif inp.is_relative_to(out):
            relation = "contains"
        elif out.is_relative_to(inp):
            relation = "lies inside"
        else:
            continue
        return (f"{what} {out} {relation} the input {inp}; writing it would change what the command reads: choose "
                "an output outside every input")
    return None


def foreign_entries(folder: Path) -> list[str]:
    """The entries of an existing folder podium did not make (all of them, unless podium's stage.json is there)."""
    if made_by_podium(folder):
        return []
    return sorted(e.name for e in folder.iterdir() if e.name not in PODIUM_ENTRIES)


def output_folder_problem(out: str | os.PathLike, overwrite: bool = False) -> str | None:
    """Why a command may not write the folder `out`: a file, a link, or a folder of the user's (without --overwrite)."""
    out = Path(out)
    if out.is_symlink():
        return f"output {out} is a symbolic link (to {os.readlink(out)}); podium does not write through links"
    if not out.exists():
        return None
    if not out.is_dir():
        return f"output {out} exists and is not a folder; choose another output path"
    foreign = foreign_entries(out)
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return (f"output {out} is a folder podium did not make (it holds {shown} and no podium {STAGE_FILE}); podium "
                f"will not write into it: choose a new folder, or pass {OVERWRITE_FLAG} to write into it anyway "
                "(podium then replaces the files it writes and deletes none of the others)")
    return None


def claim_folder(out: str | os.PathLike, record: StageRecord) -> Path:
    """Create `out` if needed and write podium's stage.json into it first: from now on the folder is podium's.

    A folder podium did not make is only claimed after `output_folder_problem` allowed it (--overwrite)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / PUBLISHED).exists():  # nothing in it is podium's to delete yet (an older model in it is not)
        write_text(out / PUBLISHED, "[]\n")
    write_json(out / STAGE_FILE, asdict(record))
    return out


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
        if len(data) > 16 << 20:  # a record of files podium wrote is small; a larger one is not podium's
            return {}
    try:
        record = json.loads(data.decode()) if data.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _open_record(folder: Path, create: bool) -> int | None:
    flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        return os.open(folder / FILES_RECORD, flags, 0o644)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.EROFS, errno.EISDIR):
            return None
        raise


def written_by_podium(path: str | os.PathLike) -> bool:
    """Whether podium wrote the file at `path` and its content is still what podium wrote."""
    p = Path(path)
    fd = _open_record(p.parent, create=False)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        recorded = _read_record(fd).get(p.name)
    finally:
        os.close(fd)
    if not isinstance(recorded, str) or p.is_symlink() or not p.is_file():
        return False
    try:
        return content_hash(p.read_bytes()) == recorded
    except OSError:
        return False


def file_output_problem(path: str | os.PathLike, inputs: Iterable[str] = (), overwrite: bool = False) -> str | None:
    """Why a single-file output may not be written at `path` (None when it may)."""
    p = Path(path)
    if problem := overlap_problem(p, inputs):
        return problem
    if p.is_symlink():
        return f"output {p} is a symbolic link (to {os.readlink(p)}); podium does not write through links"
    if not os.path.lexists(p):
        return None
    if not p.is_file():
        return f"output {p} exists and is not a file; choose another path"
    if overwrite or written_by_podium(p):
        return None
    return (f"output {p} exists and podium did not write it (or it was changed since); podium will not replace it: "
            f"choose another path, or pass {OVERWRITE_FLAG} to replace it")


def record_written(path: Path, data: bytes) -> None:
    """Note in the folder's `.podium-files.json` that podium wrote `data` at `path`."""
    fd = _open_record(path.parent, create=True)
    if fd is None:
        return  # an unwritable record only means the file counts as the user's next time
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = _read_record(fd)
        record[path.name] = content_hash(data)
        payload = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, payload)
    finally:
        os.close(fd)


def write_output_text(path: str | os.PathLike, text: str, inputs: Iterable[str] = (), overwrite: bool = False) -> Path:
    """Write a single-file output atomically, if `file_output_problem` allows it, and record it as podium's."""
    p = Path(path)
    if problem := file_output_problem(p, inputs, overwrite):
        raise PodiumError(problem)
    write_text(p, text)
    record_written(p, p.read_bytes())
    return p


def write_output_json(path: str | os.PathLike, obj, inputs: Iterable[str] = (), overwrite: bool = False) -> Path:
    """`write_output_text` of `obj` as indented JSON (non-JSON values as `str`)."""
    return write_output_text(path, json.dumps(obj, indent=2, default=str) + "\n", inputs, overwrite)


@contextmanager
def command_output(out: str | os.PathLike, kind: str, config: dict, inputs: Iterable[str] = (),
                   overwrite: bool = False, what: str = "output", main: bool = True) -> Iterator[dict]:
    """The folder a command run alone writes (`podium merge CFG OUT`, `podium sft CONFIG --output OUT`), made
    safe before any work: its name fits the filesystem, it is not, does not hold and does not lie inside an
    input, it is new, empty or podium's (or `overwrite`), no run or command holds it or a folder above it.
    Inside the block the folder is locked and claimed (stage.json written first); on success the completion
    marker with the manifest of what was written (.podium-done) is written last, as a recipe's stage does.
    The block gets a dict to put the command's metrics in (they go into the marker).

    `main` False (a rank other than 0 of a distributed command) does none of it: rank 0 does it for the job."""
    metrics: dict = {}
    if not main:
        yield metrics
        return
    out = Path(os.path.abspath(os.path.expanduser(str(out))))
    if problem := name_problem(out):
        raise PodiumError(f"{what} {problem}")
    for problem in (overlap_problem(out, inputs, what), output_folder_problem(out, overwrite)):
        if problem:
            raise PodiumError(problem)
    record = StageRecord(out.name, kind, command_key(kind, config), [], config)
    with output_lock(out, what):
        if problem := output_folder_problem(out, overwrite):  # the folder may have changed before the lock
            raise PodiumError(problem)
        claim_folder(out, record)
        start = time.perf_counter()
        yield metrics
        write_stage_done(out, record.key, time.perf_counter() - start,
                         {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))})


def command_key(kind: str, config: dict) -> str:
    """The key of what a command run alone computes (its kind and settings), as a stage key is."""
    return hashlib.sha256(json.dumps({"kind": kind, "config": config}, sort_keys=True, default=str).encode()).hexdigest()
