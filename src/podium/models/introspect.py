"""What a loaded transformers model is, read through DDP / PEFT wrappers: its config, class, attention
implementation, KV-cache argument, whether its attention is plain causal attention everywhere, and a way to
route its attention through a registered implementation for one block.

Generation (`podium.generation`) and training (`podium.training`) both ask these questions; they live here,
below both, so neither imports the other.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from contextvars import ContextVar

# Decoder layers verified to call `cache.update` and then the attention interface with the updated keys, so an
# attention implementation registered with transformers' `AttentionInterface` sees every layer's attention.
ATTENTION_INTERFACE_ARCHITECTURES = ("llama", "mistral", "mixtral", "qwen2")


def unwrapped_model(model):
    """The transformers model inside DDP / PEFT wrappers."""
    m = model
    while hasattr(m, "module"):  # DDP and friends
        m = m.module
    return m.get_base_model() if hasattr(m, "get_base_model") else m


def model_config(model):
    """The (text) config of a model, through DDP / PEFT wrappers."""
    config = unwrapped_model(model).config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def architecture(model) -> str:
    """The model's class name (e.g. `Gemma2ForCausalLM`), for messages."""
    return type(unwrapped_model(model)).__name__


def attn_implementation(model) -> str:
    return getattr(model_config(model), "_attn_implementation", None) or "eager"


def cache_argument(model) -> str:
    """The forward's KV-cache argument: `cache` since transformers 5 renamed `past_key_values` (read from the
    model class, so DDP / PEFT wrappers and an instance-level forward wrapper do not hide it)."""
    return "cache" if "cache" in inspect.signature(type(unwrapped_model(model)).forward).parameters else "past_key_values"


def full_causal_attention(config) -> bool:
    """Whether every layer of the model of `config` runs plain full causal attention through the attention
    interface: a verified architecture (`ATTENTION_INTERFACE_ARCHITECTURES`), no sliding window, no attention
    logit soft-capping, only full-attention layer types. Shared-prefix decoding (`podium.generation.shared_prefix`)
    and per-segment attention (`podium.training.segment_attention`) are exact only then."""
    if getattr(config, "model_type", None) not in ATTENTION_INTERFACE_ARCHITECTURES:
        return False
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "sliding_window", None):
        return False
    types = getattr(config, "layer_types", None) or []
    return all(t == "full_attention" for t in types)


@contextmanager
def routed_attention(config, implementation: str, state: ContextVar, value):
    """Inside the block the model of `config` attends with the registered attention `implementation`, which
    reads `value` from `state`; the model's own implementation and the state are restored afterwards."""
    saved = config._attn_implementation
    token = state.set(value)
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = saved
        state.reset(token)
