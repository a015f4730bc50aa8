"""The sampler's KV cache: a transformers DynamicCache whose full-attention layers write into preallocated
buffers instead of growing by torch.cat (which copies the whole cache every step)."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer that writes into a buffer with room for `reserve` more tokens.

    DynamicLayer appends with torch.cat, copying the whole cache every step; on CPU that copy
    dominated decoding time. `keys`/`values` are views of the filled part, `[rows, heads, filled, dim]`.
    """

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self.filled = 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.filled + key_states.shape[-2]
        if self.key_buffer is None or end > self.key_buffer.shape[-2]:
            self.key_buffer = self._grow(self.key_buffer, key_states, end + self.reserve)
            self.value_buffer = self._grow(self.value_buffer, value_states, end + self.reserve)
        self.key_buffer[..., self.filled : end, :] = key_states
        self.value_buffer[..., self.filled : end, :] = value_states
        self.filled = end
        self._expose()
        return self.keys, self.values

    def _grow(self, buffer: torch.Tensor | None, states: torch.Tensor, capacity: int) -> torch.Tensor:
        shape = (*states.shape[:-2], capacity, states.shape[-1])
        grown = states.new_empty(shape)
        if buffer is not None:
            grown[..., : self.filled, :] = buffer[..., : self.filled, :]
        return grown

    def _expose(self) -> None:
        self.keys = self.key_buffer[..., : self.filled, :]
        self.values = self.value_buffer[..., : self.filled, :]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.key_buffer is not None:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.key_buffer is not None:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("PreallocatedLayer is only used for sampling")


def preallocated_cache(config, reserve: int) -> DynamicCache:
    """A DynamicCache whose full-attention layers preallocate room for `reserve` tokens.

    Other layer kinds (sliding window, linear attention) keep their own classes.
    """
    cache = DynamicCache(config=config)
    if cache.layers:
        cache.layers = [
            PreallocatedLayer(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers
        ]
    else:
        # Layers are created lazily when the config declares no layer types.
        cache.layer_class_to_replicate = lambda: PreallocatedLayer(reserve)
    return cache
