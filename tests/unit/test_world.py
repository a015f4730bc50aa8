"""Sharding by index inside a distributed stage, with one process (the helpers are no-ops there)."""

from __future__ import annotations

import torch

from podium.distributed.world import World, current_world, gather_by_index, gather_shard_rows


def test_shard_partitions_the_items():
    for size in (1, 2, 3, 8):
        parts = [World(r, size).shard(10) for r in range(size)]
        assert sorted(i for p in parts for i in p) == list(range(10))
        assert parts[0][:2] == ([0, size] if size < 10 else [0])  # item i on rank i % size


def test_replica_groups_share_their_items():
    # 8 ranks, vLLM tensor parallel 4: ranks 0-3 are replica 0, 4-7 replica 1.
    shards = [World(r, 8).shard(5, group=4) for r in range(8)]
    assert shards[:4] == [[0, 2, 4]] * 4 and shards[4:] == [[1, 3]] * 4


def test_single_process_helpers():
    world = current_world()
    assert world == World(0, 1) and world.is_main
    assert gather_by_index({1: "b", 0: "a"}, 2, world) == ["a", "b"]
    part = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(gather_shard_rows(part, 3, world), part)


def test_on_main_writes_once(tmp_path):
    calls = []
    path = World().on_main(lambda p, x: calls.append((p, x)), tmp_path / "f", 1)
    assert path == tmp_path / "f" and calls == [(tmp_path / "f", 1)]
