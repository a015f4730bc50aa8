"""Sharded training checkpoints without pickle, readable at any world size ("universal" checkpoints).

Under FSDP2 no rank holds the whole model or optimizer, so each rank writes what it holds:

    checkpoints/step-N/
      shards-rank<R>.safetensors   rank R's local pieces: "param/<name>" (trainable parameters) and
                                   "optim/<name>/<state>" (its optimizer state, e.g. exp_avg)
      index-rank<R>.json           for every piece: the global shape, dtype, placement, the offset of
                                   the piece in the global tensor (one number per dimension), its
                                   local shape and the SHA-256 of its bytes
      optimizer.json               param groups (parameters by name) and non-tensor optimizer state
      rng-<R>.safetensors/.json    generator states, as in the unsharded format
      trainer_state.json           written last: format, world size, step, scheduler, data position
                                   and the SHA-256 of every other file of the folder

No `torch.load`, no torch.distributed.checkpoint (whose metadata is pickled). Parameters are keyed by
name, not by position, and every piece says where it sits in the global tensor, so a checkpoint written
by W processes loads into any other layout: each rank of the new run reads, from the pieces that
overlap its own part, exactly that part (`load_sharded`). That covers 2 processes -> 1, 1 -> 2 and
sharded -> unsharded; the unsharded format of podium.training.checkpoint (one process or DDP) is read
the same way through `unsharded_source`, so a one-process checkpoint continues under FSDP2.

Frozen parameters (a LoRA run's base weights) are not saved: they are the stage's input model, which
the stage's key pins. Every file is verified against the digests of `trainer_state.json` before a
checkpoint is used (`verify_files`), and every piece against its own digest when read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from podium.errors import PodiumError
from podium.training.checkpoint import (
    read_json_file,
    write_json_file,
)

INDEX_FORMAT = "podium-shard-index"
INDEX_VERSION = 1


def shard_file(rank: int) -> str:
    return f"shards-rank{rank}.safetensors"


def index_file(rank: int) -> str:
    return f"index-rank{rank}.json"


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous()
    return hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


# --- where a tensor's local part sits in the global one ------------------------------------------

def placement(t: torch.Tensor) -> tuple[torch.Tensor, list[int], list[int], str]:
    """(local tensor, global shape, global offset of the local part, placement) of a DTensor or tensor."""
    if not isinstance(t, DTensor):
        return t, list(t.shape), [0] * t.dim(), "replicate"
    loc = t.to_local()
    shape, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    if tuple(shape) != tuple(loc.shape):  # FSDP2's dim-0 chunks; anything else is a layout podium does not know
        raise PodiumError(f"unexpected local shape {tuple(loc.shape)} of a DTensor of shape {tuple(t.shape)} "
                          f"({t.placements}); expected {tuple(shape)}")
    kinds = [p.__class__.__name__ + (f"({p.dim})" if hasattr(p, "dim") else "") for p in t.placements]
    return loc, list(t.shape), [int(o) for o in offset], ",".join(kinds)


def is_replicated(kind: str) -> bool:
    return all(k == "Replicate" or k == "replicate" for k in kind.split(","))


# --- writing ---------------------------------------------------------------------------------------

def param_names(model) -> dict[int, str]:
    """id(parameter) -> name (tied parameters under their first name, as `named_parameters` gives them)."""
    return {id(p): name for name, p in model.named_parameters()}


def save_sharded(model, optimizer, folder: Path, rank: int) -> list[str]:
    """Write this rank's pieces and index into `folder` (and, on rank 0, optimizer.json); returns the
    names of the files written. Replicated tensors (scalars such as Adam's `step`) are written by rank 0."""
    names = param_names(model)
    tensors: dict[str, torch.Tensor] = {}
    entries: dict[str, dict] = {}

    def add(key: str, t: torch.Tensor) -> None:
        loc, shape, offset, kind = placement(t)
        if loc.numel() == 0 or (is_replicated(kind) and rank != 0):
            return
        loc = loc.detach().to("cpu").contiguous()
        tensors[key] = loc
        entries[key] = {"shape": shape, "offset": offset, "local_shape": list(loc.shape),
                        "dtype": str(loc.dtype).replace("torch.", ""), "placement": kind, "sha256": tensor_digest(loc)}

    for name, p in model.named_parameters():
        if p.requires_grad:
            add(f"param/{name}", p.data if not isinstance(p, DTensor) else p)
    values: dict[str, dict] = {}
    for p, state in optimizer.state.items():
        name = names[id(p)]
        for k, v in state.items():
            if torch.is_tensor(v):
                add(f"optim/{name}/{k}", v)
            else:
                values.setdefault(name, {})[k] = v
    save_file(tensors, str(folder / shard_file(rank)))
    write_json_file(folder / index_file(rank), {"format": INDEX_FORMAT, "version": INDEX_VERSION, "rank": rank,
                                                "file": shard_file(rank), "entries": entries})
    written = [shard_file(rank), index_file(rank)]
    if rank == 0:
        groups = []
        for g in optimizer.param_groups:
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]})
        write_json_file(folder / "optimizer.json", {"param_groups": groups, "values": values})
        written.append("optimizer.json")
    return written


# --- reading ---------------------------------------------------------------------------------------

class Piece:
    """A stored box of a global tensor: `file`'s tensor `key`, at `offset` with `shape`."""

    __slots__ = ("path", "key", "offset", "shape", "sha256")

    def __init__(self, path: Path, key: str, offset: list[int], shape: list[int], sha256: str | None):
        self.path, self.key, self.offset, self.shape, self.sha256 = path, key, offset, shape, sha256


class Source:
    """The pieces of each global tensor of a checkpoint, by podium key ("param/<name>", "optim/<name>/<state>"),
    plus the optimizer's param groups (by name) and non-tensor state."""

    def __init__(self, folder: Path, pieces: dict[str, list[Piece]], shapes: dict[str, list[int]], groups: list[dict],
                 values: dict[str, dict]):
        self.folder, self.pieces, self.shapes, self.groups, self.values = folder, pieces, shapes, groups, values
        self._files: dict[Path, Any] = {}
        self._checked: set[tuple[Path, str]] = set()

    def read(self, key: str, target: torch.Tensor, offset: list[int]) -> None:
        """Fill `target` (the part of global tensor `key` at `offset`) from the overlapping pieces."""
        if key not in self.pieces:
            raise PodiumError(f"{self.folder}: the checkpoint has no {key!r}; it was written for another model "
                              "or other trainable parameters (e.g. another LoRA setting)")
        covered = 0
        for piece in self.pieces[key]:
            src, dst = [], []
            for o, n, to, tn in zip(piece.offset, piece.shape, offset, target.shape):
                lo, hi = max(o, to), min(o + n, to + tn)
                if lo >= hi:
                    break
                src.append(slice(lo - o, hi - o))
                dst.append(slice(lo - to, hi - to))
            else:
                data = self.tensor(piece)
                part = data[tuple(src)] if src else data
                target[tuple(dst)] = part.to(target.device, target.dtype)
                covered += part.numel()
        if covered != target.numel():
            raise PodiumError(f"{self.folder}: the pieces of {key!r} cover {covered} of the {target.numel()} values "
                              "this process needs (a missing or foreign shard file)")

    def tensor(self, piece: Piece) -> torch.Tensor:
        try:
            f = self._files.get(piece.path)
            if f is None:
                f = self._files[piece.path] = safe_open(str(piece.path), framework="pt")
            data = f.get_tensor(piece.key)
        except FileNotFoundError:
            raise PodiumError(f"{self.folder}: checkpoint is incomplete (no {piece.path.name})") from None
        except (OSError, SafetensorError) as e:
            raise PodiumError(f"{piece.path}: checkpoint file is damaged ({e})") from None
        if list(data.shape) != list(piece.shape):
            raise PodiumError(f"{piece.path}: {piece.key} has shape {list(data.shape)}, its index says {piece.shape}")
        if piece.sha256 is not None and (piece.path, piece.key) not in self._checked:
            if tensor_digest(data) != piece.sha256:
                raise PodiumError(f"{piece.path}: {piece.key} does not match its checksum (the file was changed or "
                                  "damaged)")
            self._checked.add((piece.path, piece.key))
        return data


def sharded_source(folder: Path, state: dict) -> Source:
    """The pieces of a sharded checkpoint (`state` is its trainer_state.json)."""
    world = state.get("world")
    if not isinstance(world, int) or world < 1:
        raise PodiumError(f"{folder}: trainer_state.json has no world size")
    pieces: dict[str, list[Piece]] = {}
    shapes: dict[str, list[int]] = {}
    for r in range(world):
        index = read_json_file(folder / index_file(r))
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("entries"), dict):
            raise PodiumError(f"{folder / index_file(r)}: not a podium shard index")
        for key, e in index["entries"].items():
            try:
                pieces.setdefault(key, []).append(Piece(folder / index["file"], key, [int(x) for x in e["offset"]],
                                                        [int(x) for x in e["local_shape"]], e["sha256"]))
                shapes[key] = [int(x) for x in e["shape"]]
            except (KeyError, TypeError, ValueError):
                raise PodiumError(f"{folder / index_file(r)}: entry {key!r} is damaged") from None
    meta = read_json_file(folder / "optimizer.json")
    return Source(folder, pieces, shapes, meta.get("param_groups", []), meta.get("values", {}))


def unsharded_source(folder: Path, model, trainable: list[str]) -> Source:
    """The unsharded format (model.safetensors, optimizer.safetensors keyed by position) seen as pieces.

    `trainable`: the names of the trainable parameters in the optimizer's order (their position is the
    optimizer's parameter id there, as one process or DDP wrote it).
    """
    pieces: dict[str, list[Piece]] = {}
    shapes: dict[str, list[int]] = {}
    aliases: dict[str, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(str(id(p)), []).append(name)
    by_name = {n: group for group in aliases.values() for n in group}

    def add(path: Path, key: str, stored: str, shape: list[int]):
        pieces[key] = [Piece(path, stored, [0] * len(shape), shape, None)]
        shapes[key] = shape

    model_path = folder / "model.safetensors"
    try:
        with safe_open(str(model_path), framework="pt") as f:
            stored = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        with safe_open(str(folder / "optimizer.safetensors"), framework="pt") as f:
            opt_stored = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except FileNotFoundError as e:
        raise PodiumError(f"{folder}: checkpoint is incomplete ({e})") from None
    except (OSError, SafetensorError) as e:
        raise PodiumError(f"{folder}: checkpoint file is damaged ({e})") from None
    for name in trainable:
        found = next((n for n in by_name.get(name, [name]) if n in stored), None)
        if found is not None:
            add(model_path, f"param/{name}", found, stored[found])
    for key, shape in opt_stored.items():
        _, pid, state_name = key.split(".", 2)
        if int(pid) < len(trainable):
            add(folder / "optimizer.safetensors", f"optim/{trainable[int(pid)]}/{state_name}", key, shape)
    meta = read_json_file(folder / "optimizer.json")
    groups = [{**g, "params": [trainable[i] for i in g["params"]]} for g in meta.get("param_groups", [])]
    values = {trainable[int(pid)]: v for pid, v in meta.get("values", {}).items() if int(pid) < len(trainable)}
    return Source(folder, pieces, shapes, groups, values)


def like(param: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """`data` (this rank's part) as a tensor laid out like `param` (a DTensor when `param` is one)."""
    if isinstance(param, DTensor):
        return DTensor.from_local(data, param.device_mesh, param.placements, run_check=False, shape=param.shape,
                                  stride=param.stride())
    return data


@torch.no_grad()
def load_into(source: Source, model, optimizer) -> None:
    """Fill the trainable parameters and the optimizer state of this rank from `source` (any layout)."""
    names = param_names(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        loc, shape, offset, _ = placement(p)
        check_shape(source, f"param/{name}", shape)
        source.read(f"param/{name}", loc, offset)
    by_name = {names[id(p)]: p for g in optimizer.param_groups for p in g["params"]}
    current = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    saved = [list(g.get("params", [])) for g in source.groups]
    if saved != current:
        raise PodiumError(f"{source.folder}: the optimizer's parameters differ from the checkpoint's "
                          f"({sum(map(len, saved))} saved, {sum(map(len, current))} now)")
    state: dict[int, dict[str, Any]] = {}
    pid = {names[id(p)]: i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    prefix = "optim/"
    for key in source.pieces:
        if not key.startswith(prefix):
            continue
        name, state_name = key[len(prefix):].rsplit("/", 1)
        if name not in by_name:
            raise PodiumError(f"{source.folder}: optimizer state for {name!r}, which this run does not train")
        p = by_name[name]
        shape = source.shapes[key]
        if list(shape) == list(p.shape):  # state shaped like its parameter: sharded like it
            loc, _, offset, _ = placement(p)
            data = torch.empty_like(loc)  # torch's optimizers keep such state in the parameter's dtype
            source.read(key, data, offset)
            value = like(p, data)
        else:  # a scalar (Adam's step) or another shape: whole on every rank
            value = torch.empty(shape, dtype=source.tensor(source.pieces[key][0]).dtype)
            source.read(key, value, [0] * len(shape))
        state.setdefault(pid[name], {})[state_name] = value
    for name, entry in source.values.items():
        if name in pid:
            state.setdefault(pid[name], {}).update(entry)
    groups = [{**g, "params": [pid[n] for n in g["params"]]} for g in source.groups]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise PodiumError(f"{source.folder}: optimizer state does not fit this model and optimizer ({e})") from None


def check_shape(source: Source, key: str, shape: list[int]) -> None:
    if key in source.shapes and list(source.shapes[key]) != list(shape):
        raise PodiumError(f"{source.folder}: {key!r} has shape {source.shapes[key]} in the checkpoint, {shape} in "
                          "this model")
