"""Batching tokenised SFT examples: right-padded rows, or packed rows with block-diagonal masks."""

from __future__ import annotations

import torch

from podium.data.chat import IGNORE


def pad_batch(examples: list[dict], pad_id: int) -> dict:
    """Right-padded `input_ids`, `labels`, `attention_mask` [B, T] plus loss-unit counts."""
    T = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
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
