"""Batching tokenised SFT examples: right-padded rows, or packed rows separated by position resets.

Both layouts also carry what the loss needs to compute logits only where a label is predicted
(`pred_mask`, `targets`; see `podium.training.sft.sft_objective`).
"""

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


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where logits are needed, and what they predict.

    labels [R, T] (IGNORE where no loss) -> `pred_mask` [R, T] (True at t when the label at t + 1 counts)
    and `targets` [N] (those labels, row-major, N = pred_mask.sum()).
    """
    pred = torch.zeros_like(labels, dtype=torch.bool)
    pred[:, :-1] = labels[:, 1:] != IGNORE
    return pred, labels[:, 1:][pred[:, :-1]]


def pad_batch(examples: list[dict], pad_id: int) -> dict:
    """Right-padded `input_ids`, `labels`, `attention_mask` [B, T] plus loss-unit counts."""
    ids = right_pad([e["input_ids"] for e in examples], pad_id)
    labels = right_pad([e["labels"] for e in examples], IGNORE)
    mask = attention_mask([e["input_ids"] for e in examples])
    pred, targets = label_positions(labels)
    return {
        "input_ids": ids, "labels": labels, "attention_mask": mask, "token_mask": mask,
        "pred_mask": pred, "targets": targets,
        "count": int(targets.numel()), "num_tokens": int(mask.sum()), "num_examples": len(examples),
    }


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: example indices per row, each row's total length <= `capacity`.

    With `capacity` at least the longest example every example fits; rows come out in the order they
    were opened, examples within a row in decreasing length (ties by index).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def pack_batch(examples: list[dict], pad_id: int, capacity: int | None = None) -> dict:
    """Examples packed into rows of at most `capacity` tokens (default: the longest example's length).

    Positions restart at 0 for each example, and no attention mask is passed: transformers derives each
    model's own per-example masks (sliding windows and per-layer-type attention included) from the
    position resets, so examples cannot attend to each other and the loss equals the padded forward's.
    Rows as long as the longest example, rather than one row for the whole batch, keep attention's cost
    near the padded layout's (an sdpa/eager forward computes every query-key pair of a row, masked
    or not) while dropping almost all padding. The padding left at a row's end gets its own position
    run (a separate "sequence") and no labels.
    """
    lengths = [len(e["input_ids"]) for e in examples]
    capacity = max(capacity or 0, max(lengths))
    rows = pack_rows(lengths, capacity)
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        col = 0
        for i in row:
            n = lengths[i]
            ids[r, col:col + n] = torch.tensor(examples[i]["input_ids"], dtype=torch.long)
            labels[r, col:col + n] = torch.tensor(examples[i]["labels"], dtype=torch.long)
            # Logits at t predict token t + 1: the first token of an example has no predecessor in it.
            labels[r, col] = IGNORE
            pos[r, col:col + n] = torch.arange(n)
            real[r, col:col + n] = 1
            col += n
        pos[r, col:] = torch.arange(width - col)
    pred, targets = label_positions(labels)
    return {
        "input_ids": ids, "labels": labels, "attention_mask": None, "position_ids": pos, "token_mask": real,
        "pred_mask": pred, "targets": targets,
        "count": int(targets.numel()), "num_tokens": int(real.sum()), "num_examples": len(examples),
    }
