"""Resharding of stored pieces (podium.training.sharded_checkpoint), without processes: a tensor stored as
FSDP2's dim-0 chunks of 3 ranks is read back as 2 ranks' chunks, as 1 whole tensor, and a changed byte or a
missing piece is an error naming the file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from podium.errors import PodiumError
from podium.training.sharded_checkpoint import Piece, Source, tensor_digest


def chunks(n: int, world: int) -> list[tuple[int, int]]:
    """FSDP2's dim-0 split (torch.chunk): rank r holds rows [r*c, min((r+1)*c, n)), c = ceil(n / world)."""
    c = -(-n // world)
    return [(min(r * c, n), min((r + 1) * c, n)) for r in range(world)]


def stored(tmp_path, full: torch.Tensor, world: int) -> Source:
    pieces = []
    for r, (lo, hi) in enumerate(chunks(full.shape[0], world)):
        if hi > lo:
            path = tmp_path / f"shards-rank{r}.safetensors"
            part = full[lo:hi].contiguous()
            save_file({"param/w": part}, str(path))
            pieces.append(Piece(path, "param/w", [lo, 0], list(part.shape), tensor_digest(part)))
    return Source(tmp_path, {"param/w": pieces}, {"param/w": list(full.shape)}, [], {})


@pytest.mark.parametrize("saved_world, loaded_world", [(3, 2), (2, 3), (1, 2), (2, 1), (4, 4)])
def test_pieces_of_any_world_size_fill_any_other(tmp_path, saved_world, loaded_world):
    full = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3)
    source = stored(tmp_path, full, saved_world)
    for lo, hi in chunks(7, loaded_world):
        target = torch.full((hi - lo, 3), -1.0)
        if hi > lo:
            source.read("param/w", target, [lo, 0])
        assert torch.equal(target, full[lo:hi])


def test_a_changed_value_or_a_missing_piece_is_named(tmp_path):
    full = torch.randn(6, 2)
    source = stored(tmp_path, full, 2)
    path = tmp_path / "shards-rank1.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(PodiumError, match="shards-rank1.safetensors: param/w does not match its checksum"):
        source.read("param/w", torch.empty(6, 2), [0, 0])
    source = stored(tmp_path, full, 2)
    source.pieces["param/w"] = source.pieces["param/w"][:1]
    with pytest.raises(PodiumError, match="cover 6 of the 12 values"):
        source.read("param/w", torch.empty(6, 2), [0, 0])
    with pytest.raises(PodiumError, match="has no 'param/other'"):
        source.read("param/other", torch.empty(1), [0])
