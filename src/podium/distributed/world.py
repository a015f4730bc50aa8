"""Rank and world size inside a stage, and the few collectives the stages need (no pickle).

A stage function runs the same way alone and on every rank of a launch (podium.distributed.launcher):
`current_world()` is `World(rank=0, size=1)` outside a launch, where every helper below is a no-op.

Work is split by index: item i goes to rank i % world (`World.shard`), and results are put back by
index, so a run on any number of processes writes what one process writes. Payloads travel as JSON
bytes in uint8 tensors (`all_gather_json`) or as float tensors (`gather_shard_rows`), never as pickles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import PartialState


def launched_world_size() -> int:
    """WORLD_SIZE as set by the launcher (torchrun); 1 outside a launch."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def uses_cpu() -> bool:
    """Whether the processes talk over gloo on CPU (no CUDA, or ACCELERATE_USE_CPU set)."""
    return not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def process_state() -> PartialState | None:
    """accelerate's process state (started on first use) inside a launch of 2+ processes, else None.

    PartialState picks MULTI_CPU (gloo) only when told cpu=True; it is a singleton, so the training
    loop's Accelerator shares it.
    """
    if launched_world_size() < 2:
        return None
    state = PartialState(cpu=uses_cpu())
    return state if state.num_processes > 1 else None


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes (rank 0 is the main process)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int, group: int = 1) -> list[int]:
        """Indices of the n items this process handles: item i goes to group i % (size // group).

        `group` consecutive ranks form one replica that handles the same items (vLLM tensor
        parallelism); with group 1 item i goes to rank i % size.
        """
        replicas = max(1, self.size // group)
        return list(range(self.rank // group, n, replicas))

    def barrier(self) -> None:
        if self.size > 1:
            process_state().wait_for_everyone()

    def on_main(self, write, path, *args):
        """`write(path, *args)` on the main process only, then a barrier; returns `Path(path)` on every rank.

        For files every rank would write alike: two processes renaming one temporary name would collide.
        """
        if self.is_main:
            write(path, *args)
        self.barrier()
        return Path(path)


def current_world() -> World:
    state = process_state()
    return World(state.process_index, state.num_processes) if state is not None else World()


def device() -> torch.device:
    """This process's device: its own GPU inside a launch, else cuda (when present) or cpu."""
    state = process_state()
    if state is not None:
        return state.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def all_gather_json(obj, world: World) -> list:
    """`obj` (JSON-serialisable) of every rank, in rank order; `[obj]` outside a launch."""
    if world.size == 1:
        return [obj]
    where = process_state().device
    payload = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).to(where)
    size = torch.tensor([payload.numel()], dtype=torch.long, device=where)
    sizes = [torch.zeros_like(size) for _ in range(world.size)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8, device=where)
    padded[: payload.numel()] = payload
    parts = [torch.zeros_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return [json.loads(p[: int(s)].cpu().numpy().tobytes().decode()) for p, s in zip(parts, sizes)]


def gather_by_index(mine: dict[int, object], n: int, world: World) -> list:
    """Every rank's `{index: value}` merged into one list of n values, in index order (on every rank).

    Raises RuntimeError when an index is missing or given twice (the shards do not partition 0..n-1).
    """
    merged: dict[int, object] = {}
    for part in all_gather_json({str(i): v for i, v in mine.items()}, world):
        for i, v in part.items():
            if int(i) in merged:
                raise RuntimeError(f"item {i} was handled by two processes")
            merged[int(i)] = v
    missing = [i for i in range(n) if i not in merged]
    if missing or len(merged) != n:
        raise RuntimeError(f"items {missing[:5]} were handled by no process")
    return [merged[i] for i in range(n)]


def gather_shard_rows(part: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """Rows of every rank's `part` put back in item order: rank r's row j is item r + j * size.

    part [len(world.shard(n)), ...] -> [n, ...], on every rank (CPU).
    """
    if world.size == 1:
        return part
    where = process_state().device
    rows = -(-n // world.size)
    padded = part.new_zeros((rows, *part.shape[1:])).to(where)
    padded[: part.shape[0]] = part.to(where)
    parts = [torch.zeros_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    out = part.new_zeros((n, *part.shape[1:]))
    for r, p in enumerate(parts):
        idx = list(range(r, n, world.size))
        out[idx] = p[: len(idx)].cpu()
    return out
