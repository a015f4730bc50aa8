"""Decoding K samples of a prompt with the prompt's keys and values stored, and read, once.

A decoding step reads the whole KV cache; on a CPU (and for small batches on a GPU) that read is
most of the step's cost. When K samples of one prompt decode together, a plain batched cache holds
K copies of the prompt's keys and values and reads all of them. Here the cache holds each distinct
prompt once (`prefix`, `[prompts, kv_heads, width, dim]`, left-padded, with its mask) and only the
generated tokens per row (`own`, `[rows, kv_heads, generated, dim]`); attention runs over both as one
softmax ("cascade" or shared-prefix attention, as in Hydragen, Juravsky et al. 2024):

    scores  = q . [prefix keys of the row's prompt ; the row's own keys] * scaling   (padding: -inf)
    weights = softmax(scores)   (fp32, as transformers' eager attention)
    output  = weights[:width] . prefix values  +  weights[width:] . own values

The prefix products batch the K rows of a prompt into one matrix product against the prompt's keys.
This is exactly the attention of the fanned-out cache (the same keys, values and mask), so it is used
only where it computes what the model's own attention would: decoder layers that update the cache
and then call the attention interface, full attention on every layer, no attention logit soft-capping
(`podium.models.introspect.full_causal_attention`). The sampler switches the model's `_attn_implementation`
to `NAME` for the decoding steps only (the prefill runs the model's own attention) and restores it afterwards.
"""

from __future__ import annotations

from contextvars import ContextVar

import torch
from torch.profiler import record_function
from transformers import AttentionInterface, DynamicCache

from podium.generation.kv_cache import PreallocatedLayer
from podium.models.introspect import routed_attention

NAME = "podium_shared_prefix"
_ACTIVE: ContextVar[SharedPrefixCache | None] = ContextVar("podium_shared_prefix_cache", default=None)


class SharedPrefixLayer(PreallocatedLayer):
    """One layer: the prompts' keys/values once (`prefix_*`), each row's generated ones in the own buffer."""

    def __init__(self, prefix_keys: torch.Tensor, prefix_values: torch.Tensor, reserve: int):
        super().__init__(reserve)
        self.prefix_keys, self.prefix_values = prefix_keys, prefix_values


class SharedPrefixCache(DynamicCache):
    """The cache of a shared-prefix decode: `prefill` holds the distinct prompts' keys (one row each),
    `prefix_mask` `[prompts, width]` their padding, `row_prompt` `[rows]` which prompt each row continues."""

    def __init__(self, prefill: DynamicCache, prefix_mask: torch.Tensor, row_prompt: torch.Tensor, reserve: int):
        super().__init__()
        self.layers = [SharedPrefixLayer(layer.keys, layer.values, reserve) for layer in prefill.layers]
        self.prefix_mask = prefix_mask.bool()
        self._set_rows(row_prompt)

    def _set_rows(self, row_prompt: torch.Tensor) -> None:
        """Rows are grouped by prompt (each prompt's rows contiguous); `rank` is a row's place in its group.

        Attention works on a `[prompts, group_size]` grid of rows: `slot` is a row's flat place in it, and
        `dense` says the grid is exactly the rows in order (every prompt has `group_size` rows), so moving
        between rows and grid is a reshape. `padding` `[rows, 1, 1, width]` marks each row's prompt padding.
        """
        self.row_prompt = row_prompt
        P = len(self.prefix_mask)
        first = torch.zeros(P, dtype=torch.long, device=row_prompt.device)
        counts = torch.bincount(row_prompt, minlength=P)
        first[1:] = counts.cumsum(0)[:-1]
        self.rank = torch.arange(len(row_prompt), device=row_prompt.device) - first[row_prompt]
        self.group_size = int(counts.max()) if len(row_prompt) else 0
        self.slot = row_prompt * self.group_size + self.rank
        self.dense = bool((counts == self.group_size).all())
        self.padding = (~self.prefix_mask[row_prompt])[:, None, None, :]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices` (in order); prompts left without rows are dropped."""
        row_prompt = self.row_prompt[indices]
        kept, row_prompt = torch.unique(row_prompt, sorted=True, return_inverse=True)
        for layer in self.layers:
            layer.batch_select_indices(indices)
            layer.prefix_keys, layer.prefix_values = layer.prefix_keys[kept], layer.prefix_values[kept]
        self.prefix_mask = self.prefix_mask[kept]
        self._set_rows(row_prompt)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Columns of the whole sequence (prompt width + generated), as a fanned-out cache would report."""
        return self.prefix_mask.shape[1] + self.layers[layer_idx].filled


def decoding_with(model, cache: SharedPrefixCache):
    """Route `model`'s attention through `shared_prefix_attention` with `cache` while inside the block."""
    return routed_attention(model.config, NAME, _ACTIVE, cache)


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                            dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """The attention interface of `NAME`: query `[rows, heads, 1, dim]`, `key`/`value` the rows' own keys
    `[rows, kv_heads, generated, dim]` (the cache's `update` returned them); returns `[rows, 1, heads, dim]`."""
    cache = _ACTIVE.get()
    if cache is None or query.shape[2] != 1 or kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise RuntimeError(f"{NAME} attention runs only for single-token decoding inside decoding_with()")
    return attend(cache, module.layer_idx, query, key, value, scaling)


def attend(cache: SharedPrefixCache, layer_idx: int, query, key, value, scaling):
    """Shared-prefix attention of one decoding step at layer `layer_idx` (shapes: `shared_prefix_attention`)."""
    if torch.autograd._profiler_enabled():  # named in profiles (benchmarks/profile_hot_paths.py), free otherwise
        with record_function("shared_prefix_attention"):
            return _attend(cache, layer_idx, query, key, value, scaling)
    return _attend(cache, layer_idx, query, key, value, scaling)


def _attend(cache: SharedPrefixCache, layer_idx: int, query, key, value, scaling):
    layer = cache.layers[layer_idx]
    pk, pv = layer.prefix_keys, layer.prefix_values  # [P, g, w, d]
    rows, heads, _, dim = query.shape
    P, groups, width, _ = pk.shape
    rep = heads // groups
    K = cache.group_size
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(rows, groups, rep, dim)
    # Prefix scores: the rows of a prompt as one [K * rep, dim] block against that prompt's keys.
    qp = _to_grid(cache, q).reshape(P, K, groups, rep, dim).transpose(1, 2).reshape(P, groups, K * rep, dim)
    sp = (qp @ pk.transpose(-1, -2)).reshape(P, groups, K, rep, width).transpose(1, 2)
    sp = _from_grid(cache, sp.reshape(P * K, groups, rep, width))  # [rows, g, rep, w]
    sp = sp.masked_fill(cache.padding, float("-inf"))
    so = q @ key.transpose(-1, -2)  # [rows, g, rep, t]
    scores = torch.cat([sp, so], dim=-1).float() * scale
    weights = scores.softmax(-1).to(value.dtype)
    wp = _to_grid(cache, weights[..., :width]).reshape(P, K, groups, rep, width)
    wp = wp.transpose(1, 2).reshape(P, groups, K * rep, width)
    op = (wp @ pv).reshape(P, groups, K, rep, dim).transpose(1, 2).reshape(P * K, groups, rep, dim)
    out = _from_grid(cache, op) + weights[..., width:] @ value  # [rows, g, rep, d]
    return out.reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None


def _to_grid(cache: SharedPrefixCache, x: torch.Tensor) -> torch.Tensor:
    """Rows `[rows, ...]` to the `[prompts * group_size, ...]` grid, zeros in the empty places."""
    if cache.dense:
        return x
    return x.new_zeros((len(cache.prefix_mask) * cache.group_size, *x.shape[1:])).index_copy_(0, cache.slot, x)


def _from_grid(cache: SharedPrefixCache, x: torch.Tensor) -> torch.Tensor:
    """The grid's rows back in row order."""
    return x if cache.dense else x.index_select(0, cache.slot)


AttentionInterface.register(NAME, shared_prefix_attention)
