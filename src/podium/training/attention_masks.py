"""Attention masks for podium's packed layouts, per architecture and layer type, and when they are exact.

Prefix sharing (`podium.training.logps`) hands the model a prepared 4D mask instead of letting
transformers build one. That mask must carry everything transformers would have put in its own
(transformers 5, `masking_utils.create_causal_mask` / `create_sliding_window_causal_mask`):

- a sliding window: a query at position q sees a key at position k only when `q - k < window`
  (Mistral, Gemma-2's local layers). Positions, not columns, measure the distance: in a
  prefix-shared row the rejected branch restarts at `len(prompt)`, exactly as in its own row.
- per-layer-type masks: a decoder whose layers mix local and global attention (Gemma-2
  alternates them; Qwen2 can) takes a dict `{layer type: mask}`; one with a single kind of
  layer (Llama, Mistral, Mixtral) takes one mask, and its `config.sliding_window`, when set,
  applies to every layer.
- the mask format of the attention implementation: boolean for sdpa, additive float for eager
  (Gemma-2 runs eager: sdpa has no attention-logit soft-capping; soft-capping is applied to the
  scores before the mask is added, so the mask itself is unchanged).

Padding-free rows without prefix sharing pass no mask at all: transformers derives a per-sequence
mask (window and layer types included) from the position resets.

Which architectures podium has verified, and how each consumes a prepared mask, is the table
`MASK_CONSUMERS` (tests/parity/test_model_families.py checks every entry against TRL and a plain
forward). Anything else keeps TRL's plain padded layout, which is exact for any causal LM; podium
says so in the log rather than risk a silent difference.
"""

from __future__ import annotations

import torch

from podium.errors import PodiumError
from podium.models.introspect import architecture, attn_implementation, model_config

# model_type -> how its decoder (transformers 5) consumes a prepared attention mask.
#   "one_mask": one mask for all layers; config.sliding_window, when set, applies to each of them.
#   "layer_types": a dict {layer type: mask} with an entry per distinct value of config.layer_types.
MASK_CONSUMERS = {
    "llama": "one_mask",
    "mistral": "one_mask",
    "mixtral": "one_mask",
    "qwen2": "layer_types",
    "gemma2": "layer_types",
}
KNOWN_LAYER_TYPES = ("full_attention", "sliding_attention")
# Implementations that accept a prepared 4D mask (sdpa: boolean, eager: additive).
PREPARED_MASK_IMPLEMENTATIONS = ("sdpa", "eager")
# Implementations that derive per-sequence masks from position resets (padding-free rows).
POSITION_PACKING_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def _layer_types(config) -> list[str]:
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    window = getattr(config, "sliding_window", None)
    return ["sliding_attention" if window else "full_attention"] * config.num_hidden_layers


def prefix_sharing_problem(model) -> str | None:
    """Why prefix-shared masks would not be exact for `model` (None: they are)."""
    config = model_config(model)
    consumer = MASK_CONSUMERS.get(getattr(config, "model_type", None))
    if consumer is None:
        return (f"{architecture(model)} is not among the architectures whose masks podium has verified "
                f"({', '.join(MASK_CONSUMERS)})")
    impl = attn_implementation(model)
    if impl not in PREPARED_MASK_IMPLEMENTATIONS:
        return f"attention {impl!r} takes no prepared mask (sdpa and eager do)"
    types = set(_layer_types(config))
    unknown = types - set(KNOWN_LAYER_TYPES)
    if unknown:
        return f"{architecture(model)} has layer types {sorted(unknown)} that podium builds no mask for"
    if consumer == "one_mask" and len(types) > 1:
        return f"{architecture(model)} mixes layer types {sorted(types)} but takes one mask"
    return None


def padding_free_problem(model) -> str | None:
    """Why padding-free rows (no prefix sharing) would not be exact for `model` (None: they are)."""
    config = model_config(model)
    if getattr(config, "model_type", None) not in MASK_CONSUMERS:
        return (f"{architecture(model)} is not among the architectures whose packed masks podium has verified "
                f"({', '.join(MASK_CONSUMERS)})")
    impl = attn_implementation(model)
    if impl not in POSITION_PACKING_IMPLEMENTATIONS:
        return f"attention {impl!r} does not separate packed sequences by position ids"
    unknown = set(_layer_types(config)) - set(KNOWN_LAYER_TYPES)
    if unknown:
        return f"{architecture(model)} has layer types {sorted(unknown)} that podium has not verified packed"
    return None


def check_causal(model) -> None:
    """Raise a PodiumError, before any training, for a model whose attention is not causal.

    Sequence log-probs need a causal language model. Layout features are not checked here: those
    that would not be exact are turned off (`exact_layout`); the MoE router loss checks its own
    needs (`podium.training.router_loss.router_aux_coef`).
    """
    config = model_config(model)
    if getattr(config, "is_causal", True) is False or getattr(config, "use_bidirectional_attention", False):
        raise PodiumError(f"{architecture(model)} is configured for bidirectional attention (is_causal / "
                          "use_bidirectional_attention); completion log-probs need a causal language model")


def exact_layout(model, prefix_sharing: bool, padding_free: bool, log=None) -> tuple[bool, bool]:
    """The (prefix_sharing, padding_free) podium uses for `model`: the requested ones, less any that
    would not be exact for it. Each one turned off is logged with the reason."""
    if prefix_sharing and (why := prefix_sharing_problem(model)):
        if log is not None:
            log.info("prefix_sharing off for this model: %s; using TRL's layout (one row per sequence)", why)
        prefix_sharing = False
    if padding_free and not prefix_sharing and (why := padding_free_problem(model)):
        if log is not None:
            log.info("padding_free off for this model: %s; using padded rows", why)
        padding_free = False
    return prefix_sharing, padding_free


def window_mask(position_ids: torch.Tensor, window: int) -> torch.Tensor:
    """`[R, L, L]` True where key position is within `window` of the query's (`q - k < window`)."""
    return (position_ids[:, :, None] - position_ids[:, None, :]) < window


def prepared_masks(model, visible: torch.Tensor, position_ids: torch.Tensor, dtype: torch.dtype):
    """The `attention_mask` argument for a prepared-mask forward of `model`.

    `visible` `[R, L, L]` bool: which keys each query may see ignoring any sliding window;
    `position_ids` `[R, L]`. Returns a `[R, 1, L, L]` mask, or a dict of them per layer type, in
    the format of the model's attention implementation.
    """
    config = model_config(model)
    window = getattr(config, "sliding_window", None)
    # A padding query sees at least itself, so no softmax row is empty (NaN in sdpa).
    visible = visible | torch.eye(visible.shape[-1], dtype=torch.bool, device=visible.device)
    fmt = _formatter(attn_implementation(model), dtype)

    def mask(layer_type: str) -> torch.Tensor:
        if layer_type == "sliding_attention" and window:
            return fmt(visible & window_mask(position_ids, window))
        return fmt(visible)

    if MASK_CONSUMERS.get(config.model_type) == "layer_types":
        return {t: mask(t) for t in dict.fromkeys(_layer_types(config))}
    return mask("sliding_attention" if window else "full_attention")


def _formatter(impl: str, dtype: torch.dtype):
    if impl == "sdpa":
        return lambda m: m[:, None]
    if impl == "eager":
        return lambda m: torch.zeros(m[:, None].shape, dtype=dtype, device=m.device).masked_fill(
            ~m[:, None], torch.finfo(dtype).min)
    raise ValueError(f"attention {impl!r} takes no prepared mask")
