"""Preflight of a plan's Hub inputs: fail before any stage runs when a model or dataset is out of reach.

A full-scale recipe run on a machine without network must stop at once with a message
naming each model and dataset it could not reach, not after hours of earlier stages,
and not with a traceback from deep inside a download.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from podium.errors import PodiumError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
FILE_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml", ".txt", ".csv", ".parquet", ".safetensors")
DATASET_KEYS = {"data", "prompts", "path"}
MODEL_KEYS = {"model", "reference", "base_model", "lora_base", "lora_adapter"}


def hub_inputs(value, key: str | None = None, kind: str | None = None, found=None) -> list[tuple[str, str]]:
    """(repo id, "model" | "dataset") pairs named in a stage config, by the keys that hold them."""
    found = [] if found is None else found
    if isinstance(value, dict):
        for k, v in value.items():
            sub = "dataset" if k in DATASET_KEYS else "model" if k in MODEL_KEYS else kind
            hub_inputs(v, k, sub, found)
    elif isinstance(value, list):
        for v in value:
            hub_inputs(v, key, kind, found)
    elif isinstance(value, str) and kind and key in DATASET_KEYS | MODEL_KEYS:
        if "+" in value and kind == "model":  # mergekit's BASE+LORA
            for part in value.split("+"):
                hub_inputs(part, key, kind, found)
        elif REPO_ID.match(value) and not value.endswith(FILE_SUFFIXES) and not Path(value).exists():
            found.append((value, kind))
    return found


def reachable(repo_id: str, kind: str) -> tuple[bool, str]:
    """Whether `repo_id` is in the local cache or answers on the Hub (short timeout)."""
    from huggingface_hub import snapshot_download

    repo_type = "dataset" if kind == "dataset" else "model"
    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
        return True, "cached"
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False, "not in the local cache and HF_HUB_OFFLINE is set"
    from huggingface_hub import HfApi

    try:
        info = HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info
        info(repo_id, timeout=10)
        return True, "online"
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return False, text[:200]


def check_hub_inputs(stages) -> None:
    """Raise one PodiumError listing every unreachable Hub input of the stages about to run."""
    missing = []
    seen = set()
    for name, config in stages:
        for repo_id, kind in hub_inputs(config):
            if (repo_id, kind) in seen:
                continue
            seen.add((repo_id, kind))
            ok, why = reachable(repo_id, kind)
            if not ok:
                missing.append(f"  stage {name!r}: {kind} {repo_id!r}: {why}")
    if missing:
        raise PodiumError("cannot reach these Hub inputs (nothing was run):\n" + "\n".join(missing)
                          + "\nDownload them on a connected machine (huggingface-cli download ...) or point the "
                          "recipe at local folders.")
