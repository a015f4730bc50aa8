"""Preflight of a plan's Hub inputs: fail before any stage runs when a model or dataset is out of reach.

A full-scale recipe run on a machine without network must stop at once with a message
naming each model and dataset it could not reach, not after hours of earlier stages,
and not with a traceback from deep inside a download.

Two rules keep lookups short:
- a reference that looks like a local path (`./x`, `/x`, `~/x`, `a/b/c`, `x.jsonl`, or `dir/x` where `dir`
  is a local folder) and does not exist is an error at once: it is never sent to the Hub as a repo id;
- the Hub is probed once per process with one request of at most `PROBE_TIMEOUT` seconds and no retries;
  when it does not answer, the process goes offline (`HF_HUB_OFFLINE`), so transformers, datasets and
  huggingface_hub look in the local cache only instead of retrying each file for half a minute.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import huggingface_hub
from huggingface_hub import HfApi, snapshot_download
from pydantic import BaseModel

from podium.errors import PodiumError
from podium.limits import path_text_problem, regular_file_problem
from podium.refs import iter_refs
from podium.stages import get_stage

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
FILE_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml", ".txt", ".csv", ".parquet", ".safetensors")
PROBE_TIMEOUT = 5.0
log = logging.getLogger("podium")
_online: bool | None = None  # the probe's answer, once per process


def looks_local(value: str) -> bool:
    """Whether a reference names a local path rather than a Hub id (`org/name`) or a bare name.

    `org/name` is a Hub id unless `org` is a folder here (`data/mine` next to a local `data/`)."""
    v = value.strip()
    if v.startswith(("/", "./", "../", "~")) or v.endswith(FILE_SUFFIXES):
        return True
    if "/" in v and not REPO_ID.match(v):
        return True
    return "/" in v and os.path.isdir(v.split("/", 1)[0])


def local_path_problem(value: str) -> str | None:
    """Why a local-looking reference cannot be read: it does not exist, or is neither a folder nor a regular file.
    None for a path that can be read and for what looks like a Hub id."""
    if problem := path_text_problem(value):
        return f"{value[:60]!r}... {problem}"
    path = os.path.expanduser(value)
    if os.path.lexists(path) and not os.path.exists(path):
        return f"{value!r} is a broken symbolic link"
    if os.path.exists(path):
        problem = None if os.path.isdir(path) else regular_file_problem(path)
        return f"{value!r} {problem}" if problem else None
    if looks_local(value):
        return f"{value!r} does not exist (a local path, so it is not looked up on the Hub)"
    return None


def check_local(value: str, what: str = "input") -> None:
    """Raise a PodiumError when `local_path_problem` finds one (each part of a `BASE+LORA` reference)."""
    for part in str(value).split("+"):
        if problem := local_path_problem(part):
            raise PodiumError(f"{what} {problem}")


def go_offline(reason: str) -> None:
    """Make every Hub client in this process (and the processes it starts) use the local cache only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    if (datasets_config := sys.modules.get("datasets.config")) is not None:
        datasets_config.HF_HUB_OFFLINE = True
    log.warning(f"the Hub is not reachable ({reason}); Hub ids are looked up in the local cache only")


def hub_online() -> bool:
    """Whether the Hub answers: one request, `PROBE_TIMEOUT` seconds, no retries; remembered for the process."""
    global _online
    if huggingface_hub.constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if _online is None:
        try:
            huggingface_hub.get_session().head(huggingface_hub.constants.ENDPOINT, timeout=PROBE_TIMEOUT)
            _online = True
        except Exception as e:  # noqa: BLE001 - any failure to connect means offline
            _online = False
            go_offline(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return _online


def before_hub_lookup(value: str, what: str = "input") -> None:
    """Call before a library resolves `value` (a local path or a Hub id): a missing local path is an error, and
    a Hub id is looked up online only when the Hub answers (`hub_online`)."""
    check_local(value, what)
    if not os.path.exists(os.path.expanduser(str(value).split("+")[0])):
        hub_online()


def hub_inputs(schema: type[BaseModel], config: dict) -> list[tuple[str, str]]:
    """(repo id, "model" | "dataset") pairs a stage config names: its typed references (podium.refs)
    that are not local paths and look like Hub ids."""
    found = []
    for _, kind, value in iter_refs(schema, config):
        if kind == "file":
            continue
        # mergekit's BASE+LORA names two models
        for part in value.split("+") if kind == "model" else [value]:
            if REPO_ID.match(part) and not looks_local(part) and not os.path.exists(part):
                found.append((part, kind))
    return found


def reachable(repo_id: str, kind: str) -> tuple[bool, str]:
    """Whether `repo_id` is in the local cache or answers on the Hub (short timeout)."""
    repo_type = "dataset" if kind == "dataset" else "model"
    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
        return True, "cached"
    except Exception:
        pass
    if not hub_online():
        return False, "not in the local cache, and the Hub is not reachable (or HF_HUB_OFFLINE is set)"
    try:
        info = HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info
        info(repo_id, timeout=10)
        return True, "online"
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return False, text[:200]


def check_hub_inputs(stages) -> None:
    """Raise one PodiumError listing every unreachable Hub input of the stages about to run.

    `stages`: (stage name, stage kind, config dict) triples.
    """
    missing = []
    seen = set()
    for name, stage_kind, config in stages:
        for repo_id, kind in hub_inputs(get_stage(stage_kind).config, config):
            if (repo_id, kind) in seen:
                continue
            seen.add((repo_id, kind))
            ok, why = reachable(repo_id, kind)
            if not ok:
                missing.append(f"  stage {name!r}: {kind} {repo_id!r}: {why}")
    if missing:
        raise PodiumError("cannot reach these Hub inputs (nothing was run):\n" + "\n".join(missing)
                          + "\nDownload them on a connected machine (hf download ...; huggingface-cli download before "
                          "huggingface_hub 0.34) or point the recipe at local folders.")
