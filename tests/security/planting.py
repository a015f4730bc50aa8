"""What the security tests plant: pickles that leave a marker file when unpickled; a snapshot of a folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

# File names accelerate's save_state writes (and load_state reads) plus the usual pickle checkpoint names.
PICKLE_NAMES = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "random_states_1.pkl", "optimizer.bin",
                "scheduler.bin", "scaler.pt", "sampler.bin", "pytorch_model.bin", "training_args.bin",
                "rng_state.pth", "optimizer.pt", "scheduler.pt")


class Payload:
    """Unpickling this runs `exec`, which writes the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pickle ran')",)


def plant_pickle(path: Path, marker: Path) -> Path:
    """A torch-format pickle (what torch.load, accelerate and transformers read) holding the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": Payload(marker)}, path)
    return path


def plant_pickles(folder: Path, marker: Path, names=PICKLE_NAMES, existing: bool = True) -> list[Path]:
    """Pickles under `names` in `folder`, and (with `existing`) in place of every pickle-looking file there."""
    planted = [plant_pickle(folder / n, marker) for n in names]
    for p in folder.iterdir() if existing else ():
        if p.suffix in (".bin", ".pkl", ".pt", ".pth") and p not in planted:
            planted.append(plant_pickle(p, marker))
    return planted


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` with its type, size, mtime and content hash: equal snapshots = untouched."""
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[str(p.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out
