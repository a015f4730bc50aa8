"""Attention over packed rows one example at a time: causal attention per segment, no block-diagonal mask.

A packed row holds several examples, separated by position resets. transformers turns the resets into a
block-diagonal causal mask `[R, 1, L, L]`, and sdpa/eager attention then computes every query-key pair
of the row, masked or not, through sdpa's masked path (on a CPU that was 55 % of a packed SFT step,
benchmarks/profile_hot_paths.py). Here each example's queries attend to its own keys with
`scaled_dot_product_attention(..., is_causal=True)`: the pairs outside an example are never computed,
the kernel skips the causal upper triangle, and no mask is built. The result is the block-diagonal
causal attention itself (what flash-attention's variable-length kernel computes on a GPU), so the loss
equals the padded forward's (tests/unit/test_segment_attention.py).

It applies where attention is plain causal attention on every layer (`segments_applicable`): sdpa, no
sliding window, no logit soft-capping, no attention dropout, and an architecture whose layers call the
attention interface (`podium.models.introspect.ATTENTION_INTERFACE_ARCHITECTURES`). `attending_by_segments` switches the
model's `_attn_implementation` to `SEGMENTS_NAME` for one forward and restores it afterwards.
"""

from __future__ import annotations

from contextvars import ContextVar

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from podium.models.introspect import attn_implementation, full_causal_attention, model_config, routed_attention

SEGMENTS_NAME = "podium_segments"
_SEGMENTS: ContextVar[list[list[tuple[int, int]]] | None] = ContextVar("podium_segments", default=None)


def segments_applicable(model) -> bool:
    """Whether per-segment causal attention computes what `model`'s attention computes on packed rows.

    Not under gradient checkpointing: a checkpointed layer is recomputed in the backward, outside
    `attending_by_segments`, where it would attend with the model's own implementation (and no mask)."""
    config = model_config(model)
    return (attn_implementation(model) == "sdpa" and full_causal_attention(config)
            and not getattr(config, "attention_dropout", 0.0) and not checkpointed(model))


def checkpointed(model) -> bool:
    """Whether any layer of `model` recomputes its forward in the backward (gradient checkpointing)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row of `position_ids` `[R, L]`, the `(start, end)` column ranges of its examples (a run starts
    where the position does not continue the previous one)."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    length = position_ids.shape[1]
    out = []
    for row in starts.cpu():
        cols = row.nonzero().squeeze(-1).tolist()
        out.append(list(zip(cols, cols[1:] + [length])))
    return out


def attending_by_segments(model, position_ids: torch.Tensor):
    """Inside the block, `model`'s attention runs per segment of the packed rows `position_ids` `[R, L]`."""
    return routed_attention(model_config(model), SEGMENTS_NAME, _SEGMENTS, segments(position_ids))


def segment_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                      dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """The attention interface of `SEGMENTS_NAME`: `query` `[R, H, L, d]`, `key`/`value` `[R, G, L, d]`; returns
    `[R, L, H, d]` as transformers' attention functions do."""
    runs = _SEGMENTS.get()
    if runs is None or dropout or kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise RuntimeError(f"{SEGMENTS_NAME} attention runs only inside attending_by_segments(), without dropout, "
                           "sliding windows or soft-capping")
    gqa = query.shape[1] != key.shape[1]
    rows = []
    # torch.split, not slicing: a split's backward is one concatenation, while each slice's backward would
    # be a zero tensor of the whole input's size.
    for q, k, v, row in zip(query.split(1), key.split(1), value.split(1), runs):
        sizes = [e - s for s, e in row]
        parts = [F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling, enable_gqa=gqa)
                 for qs, ks, vs in zip(q.split(sizes, dim=2), k.split(sizes, dim=2), v.split(sizes, dim=2))]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs) -> None:
    """The mask builder of `SEGMENTS_NAME`: segments need no mask, so transformers builds none."""
    return None


AttentionInterface.register(SEGMENTS_NAME, segment_attention)
AttentionMaskInterface.register(SEGMENTS_NAME, _no_mask)
