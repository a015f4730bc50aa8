"""The prompt forward of prefix sharing, whose last decoder layer computes only its keys and values.

With prefix sharing (`podium.training.logps`) the prompts' forward only fills the KV cache: its outputs
are never read, because every kept logit comes from the completions' forward. The cache needs every
layer's keys and values, and those of the last layer need that layer's input, but none of its output:
the last layer's queries, attention, output projection and MLP over the prompt tokens are wasted (on a
4-layer model a fifth of a prompt token's FLOPs, on a 32-layer one about 3 %). `keys_values_only`
replaces the last layer's forward, for one call, by: input norm, key and value projections, rotary
embedding on the keys, cache update; it returns its input unchanged (read by nothing that is kept). These
are the layer's own modules and the ops of its attention's key path, so the cache holds exactly what the
full layer would have written (tests/unit/test_logps.py) and gradients reach the same weights.

Applies to decoder layers whose key path is exactly that (`KEY_PATH_LAYERS`: Llama, Mistral, Qwen2;
not Gemma's or Qwen3's with key norms, not MoE layers whose router loss would miss the prompt tokens),
when the layer is the plain module (not wrapped by FSDP or another class) and runs without gradient
checkpointing. Elsewhere the layer runs whole.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

from transformers.models.llama.modeling_llama import rotate_half

from podium.models.introspect import unwrapped_model

KEY_PATH_LAYERS = {"LlamaDecoderLayer": "LlamaAttention", "MistralDecoderLayer": "MistralAttention",
                   "Qwen2DecoderLayer": "Qwen2Attention"}


def last_layer(model):
    """The last decoder layer of `model` if `keys_values_only` applies to it, else None."""
    layers = getattr(getattr(unwrapped_model(model), "model", None), "layers", None)
    if not layers:
        return None
    layer = layers[-1]
    attention = KEY_PATH_LAYERS.get(type(layer).__name__)
    if attention is None or type(getattr(layer, "self_attn", None)).__name__ != attention:
        return None
    if getattr(layer, "gradient_checkpointing", False) or "forward" in vars(layer):
        return None
    return layer


def keys_values_only(model):
    """Inside the block, `model`'s last decoder layer writes its keys and values to the cache and stops."""
    layer = last_layer(model)
    return nullcontext() if layer is None else _keys_values_only(layer)


@contextmanager
def _keys_values_only(layer):
    attention = layer.self_attn

    def forward(hidden_states, *args, position_embeddings=None, **kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is None or position_embeddings is None:
            raise RuntimeError("keys_values_only needs the forward's cache and rotary embeddings")
        h = layer.input_layernorm(hidden_states)
        shape = (*h.shape[:-1], -1, attention.head_dim)
        keys = attention.k_proj(h).view(shape).transpose(1, 2)
        values = attention.v_proj(h).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        cache.update((keys * cos) + (rotate_half(keys) * sin), values, attention.layer_idx)
        return hidden_states

    layer.forward = forward
    try:
        yield
    finally:
        del layer.forward
