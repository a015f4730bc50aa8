"""Preflight of a plan's Hub inputs: fail before any stage runs when a model or dataset is out of reach.

A full-scale recipe run on a machine without network must stop at once with a message
naming each model and dataset it could not reach, not after hours of earlier stages,
and not with a traceback from deep inside a download.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from pydantic import BaseModel

from podium.errors import PodiumError
from podium.refs import iter_refs
from podium.stages import get_stage

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
FILE_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml", ".txt", ".csv", ".parquet", ".safetensors")


def hub_inputs(schema: type[BaseModel], config: dict) -> list[tuple[str, str]]:
    """(repo id, "model" | "dataset") pairs a stage config names: its typed references (podium.refs)
    that are not local paths and look like Hub ids."""
    found = []
    for _, kind, value in iter_refs(schema, config):
        if kind == "file":
            continue
        # mergekit's BASE+LORA names two models
        for part in value.split("+") if kind == "model" else [value]:
            if REPO_ID.match(part) and not part.endswith(FILE_SUFFIXES) and not Path(part).exists():
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
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False, "not in the local cache and HF_HUB_OFFLINE is set"
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
