"""Pair accuracy of a reward model or GPM: the share of pairs it orders as the data does.

`podium eval preference --model DIR --data PAIRS.jsonl` reports `evaluate_preference`.
"""

from __future__ import annotations

import os

import torch

from podium.data.preference import read_pairs
from podium.data.response_batches import make_pair_collate
from podium.models.heads import load_preference_model


@torch.no_grad()
def preference_accuracy(model, records, collate, batch_size: int = 16) -> dict:
    """Share of pairs with P(chosen ≻ rejected) > 0.5, i.e. pair logit > 0; ties count as wrong."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(records), batch_size):
        batch = collate(records[start : start + batch_size])
        correct += int((model.pair_logits(batch) > 0).sum())
    model.train(was_training)
    return {"accuracy": correct / len(records) if records else 0.0, "count": len(records)}


def evaluate_preference(model_dir: str | os.PathLike, data, batch_size: int = 16,
                        max_length: int | None = None) -> dict:
    """`{"accuracy", "count"}` of the preference model saved in `model_dir` on the pairs in `data`."""
    model, tokenizer = load_preference_model(model_dir)
    pairs = read_pairs(data)
    collate = make_pair_collate(tokenizer, max_length=max_length or model.max_length)
    return preference_accuracy(model, pairs, collate, batch_size=batch_size)
