"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A run dir is meant to be moved and shared, so resuming from it must never run code from it
(issue 13). accelerate's `save_state` writes the scheduler with pickle and reads it back with
`weights_only=False`; podium writes and reads its own folder instead:

    checkpoints/step-N/
      model.safetensors         the unwrapped model's state dict (tied tensors stored once)
      optimizer.safetensors     every tensor of the optimizer state ("state.<param>.<name>")
      optimizer.json            param groups and the non-tensor optimizer state
      rng-<rank>.safetensors    torch (and CUDA) generator states of process <rank>
      rng-<rank>.json           Python's `random` and NumPy's global generator states
      trainer_state.json        written last: format tag, step, global batch, scheduler,
                                grad scaler, divergence-guard state, trainable weight norm

Data order is a function of (seed, step) (see podium.training.loop), so `step` is the whole data
position. A checkpoint is published by renaming its temporary folder, so a folder named
`step-N` is complete; a damaged one is a `PodiumError` naming it, never a traceback.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as load_model_file
from safetensors.torch import save_model as save_model_file

from podium.errors import PodiumError

FORMAT = "podium-checkpoint"
VERSION = 1
STATE_FILE = "trainer_state.json"


# --- JSON with tuples -------------------------------------------------------------------------
# Optimizer param groups hold tuples (AdamW's `betas`); JSON has lists only, so tuples are tagged.

def to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v) for v in value]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        raise TypeError("tensors go to safetensors, not JSON")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON")


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(from_json(v) for v in value["__tuple__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def write_json_file(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(to_json(obj)))


def read_json_file(path: Path) -> Any:
    try:
        return from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise PodiumError(f"{path.parent}: checkpoint is incomplete (no {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PodiumError(f"{path}: checkpoint file is unreadable ({e})") from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise PodiumError(f"{path.parent}: checkpoint is incomplete (no {path.name})") from None
    except (OSError, SafetensorError) as e:
        raise PodiumError(f"{path}: checkpoint file is damaged ({e})") from None


# --- optimizer ----------------------------------------------------------------------------------

def save_optimizer(optimizer, folder: Path) -> None:
    """`optimizer.state_dict()` split into `optimizer.safetensors` (tensors) and `optimizer.json`."""
    sd = optimizer.state_dict()
    tensors, values = {}, {}
    for pid, entry in sd["state"].items():
        for name, v in entry.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = v.detach().to("cpu").contiguous()
            else:
                values.setdefault(str(pid), {})[name] = v
    save_file(tensors, str(folder / "optimizer.safetensors"))
    write_json_file(folder / "optimizer.json", {"param_groups": sd["param_groups"], "values": values})


def load_optimizer(optimizer, folder: Path) -> None:
    meta = read_json_file(folder / "optimizer.json")
    tensors = read_tensors(folder / "optimizer.safetensors")
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = t
    for pid, entry in meta.get("values", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, TypeError) as e:
        raise PodiumError(f"{folder}: optimizer state does not fit this model and optimizer ({e})") from None


# --- random generators --------------------------------------------------------------------------

def save_rng(folder: Path, rank: int) -> None:
    """This process's generator states (what dropout and any sampling in the objective draw from)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    save_file(tensors, str(folder / f"rng-{rank}.safetensors"))
    name, keys, pos, has_gauss, cached = np.random.get_state()
    write_json_file(folder / f"rng-{rank}.json", {
        "python": random.getstate(),
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    })


def load_rng(folder: Path, rank: int, log=None) -> None:
    if not (folder / f"rng-{rank}.json").exists():
        # Written by a run with fewer processes: data order is unaffected (a function of seed and step).
        if log:
            log.warning(f"{folder}: no generator state for process {rank}; keeping this process's own")
        return
    meta = read_json_file(folder / f"rng-{rank}.json")
    tensors = read_tensors(folder / f"rng-{rank}.safetensors")
    try:
        torch.set_rng_state(tensors["torch"])
        cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        random.setstate(meta["python"])
        name, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise PodiumError(f"{folder}: generator state for process {rank} is damaged ({e})") from None


# --- model ----------------------------------------------------------------------------------------

def save_weights(model, folder: Path) -> None:
    save_model_file(model, str(folder / "model.safetensors"))


def load_weights(model, folder: Path) -> None:
    path = folder / "model.safetensors"
    if not path.exists():
        raise PodiumError(f"{folder}: checkpoint is incomplete (no model.safetensors)")
    try:
        missing, unexpected = load_model_file(model, str(path), strict=False)
    except (OSError, SafetensorError, RuntimeError) as e:
        raise PodiumError(f"{path}: checkpoint weights do not load into this model ({e})") from None
    if missing or unexpected:
        raise PodiumError(f"{path}: checkpoint weights do not match this model "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def weights_are_finite(folder: Path) -> bool:
    """Whether every floating tensor of the checkpoint's weights (`model.safetensors`, or the parameter
    pieces of every rank's shard file) is finite."""
    files = sorted(folder.glob("shards-rank*.safetensors")) or [folder / "model.safetensors"]
    for path in files:
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError):
            return False
        if not all(bool(torch.isfinite(t).all()) for k, t in tensors.items()
                   if t.is_floating_point() and not k.startswith("optim/")):
            return False
    return True


# --- the folder -------------------------------------------------------------------------------------

def read_state(folder: Path) -> dict | None:
    """`trainer_state.json` of a podium checkpoint, or None when `folder` is not one."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("step"), int):
        return None
    return from_json(state)


def is_real_dir(p: Path) -> bool:
    """A directory that is not a symbolic link: podium reads and deletes only what it wrote."""
    return p.is_dir() and not p.is_symlink()


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Every `step-N` folder (real folders only, never symlinks), oldest first."""
    if not is_real_dir(ckpt_dir):
        return []
    found = [(int(p.name[5:]), p) for p in ckpt_dir.glob("step-*") if p.name[5:].isdigit() and is_real_dir(p)]
    return sorted(found)


def resumable_checkpoints(ckpt_dir: Path, log=None) -> list[tuple[int, Path, dict]]:
    """Complete podium checkpoints, newest first; folders in another format are skipped with a warning."""
    out = []
    for step, p in reversed(list_checkpoints(ckpt_dir)):
        state = read_state(p)
        if state is None:
            if log and (p / STATE_FILE).exists():
                log.warning(f"{p}: not a podium {VERSION} checkpoint (e.g. accelerate's pickled state from an "
                            "older podium, or a damaged {STATE_FILE}); it is not read")
            elif log:
                log.warning(f"{p}: no {STATE_FILE} (an incomplete or damaged checkpoint); it is not read")
            continue
        out.append((step, p, state))
    return out


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
