"""Batching tokenised SFT examples: right-padded rows, or packed rows with block-diagonal masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from podium.data.chat import IGNORE


def right_pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Token rows of different lengths -> [N, T] int64, right-padded with `value` (T = longest row)."""
    T = max(len(r) for r in rows)
    out = torch.full((len(rows), T), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def attention_mask(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """1 on each row's tokens, 0 on the right padding `right_pad` adds. -> [N, T] int64."""
    return right_pad([[1] * len(r) for r in rows], 0)


def pad_batch(examples: list[dict], pad_id: int) -> dict:
    """Right-padded `input_ids`, `labels`, `attention_mask` [B, T] plus loss-unit counts."""
    ids = right_pad([e["input_ids"] for e in examples], pad_id)
    labels = right_pad([e["labels"] for e in examples], IGNORE)
    mask = attention_mask([e["input_ids"] for e in examples])
    return {
        "input_ids": ids, "labels": labels, "attention_mask": mask,
        "count": int((labels[:, 1:] != IGNORE).sum()), "num_tokens": int(mask.sum()), "num_examples": len(examples),
    }


def pack_batch(examples: list[dict], pad_id: int) -> dict:
    """All examples in one row [1, sum(T_i)], no padding: positions restart per example.

    No attention mask: transformers derives each model's own per-example masks (sliding windows
    and per-layer-type attention included) from the position resets, so examples cannot attend
    to each other and the loss equals the padded forward's.
    """
    ids = torch.tensor([t for e in examples for t in e["input_ids"]], dtype=torch.long)[None]
    labels = torch.tensor([t for e in examples for t in e["labels"]], dtype=torch.long)
    starts, pos = [], []
    for e in examples:
        starts.append(len(pos))
        pos.extend(range(len(e["input_ids"])))
    T = len(pos)
    # Logits at t predict token t+1: the first token of an example has no predecessor in it.
    shifted = labels.clone()
    for st in starts:
        shifted[st] = IGNORE
    return {
        "input_ids": ids, "labels": shifted[None], "attention_mask": None,
        "position_ids": torch.tensor(pos)[None],
        "count": int((shifted[1:] != IGNORE).sum()), "num_tokens": T, "num_examples": len(examples),
    }
