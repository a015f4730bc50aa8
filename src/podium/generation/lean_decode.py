"""One decoding step of a Llama-family model without transformers' per-call machinery.

A decoding step moves one token per row through the model. On a CPU, and for small batches on a GPU,
the step's cost is mostly per-op and per-call overhead rather than arithmetic. Transformers' forward
calls each module through its hooks and keyword plumbing, reads the config attribute by attribute,
builds the attention mask in Python every step, and runs 264 top-level tensor ops per step on the
4-layer tiny Llama (889 counting nested ones). `LeanDecoder` runs the same computation from the model's
own weights in 222 (679): q, k and v in one matrix product and gate and up in another (up to
`FUSE_LIMIT_BYTES` of weight copies), rotary embedding applied to queries and keys together, the KV cache
written in place, and attention either by `scaled_dot_product_attention` (the prompt's padding as its
mask) or, for K samples of one prompt, by shared-prefix attention (`podium.generation.shared_prefix`).

It computes what the model's forward computes (same weights, same op order per element: RMSNorm in
fp32 then the weight, rotary `x * cos + rotate_half(x) * sin` with the model's own rotary module, so every
rope scaling type is the model's; SiLU-gated MLP); tests compare logits and sampled tokens with the
model's forward. It is used only where that holds (`lean_applicable`): plain transformers Llama, Mistral and
Qwen2 causal LMs (no MoE, no sliding window, SiLU, linear layers that are exactly `nn.Linear`, no hooks
such as accelerate's offloading or a PEFT wrapper); everything else decodes through the model's forward.
The prefill (the prompt's tokens) always runs the model's own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half

from podium.generation.shared_prefix import SharedPrefixCache, attend
from podium.models.introspect import full_causal_attention

CLASSES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


def lean_applicable(model) -> bool:
    """Whether `LeanDecoder` computes exactly what `model`'s forward computes (module doc)."""
    if type(model).__name__ not in CLASSES or not full_causal_attention(model.config):
        return False
    config = model.config
    if getattr(config, "hidden_act", None) != "silu" or getattr(config, "pretraining_tp", 1) not in (1, None):
        return False
    if "forward" in vars(model):  # a wrapped forward (accelerate's autocast, a test double) must run
        return False
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return False
    for module in model.modules():
        if getattr(module, "_hf_hook", None) is not None or module._forward_hooks or module._forward_pre_hooks:
            return False
    linears = [model.lm_head]
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    return all(type(m) is nn.Linear for m in linears) and type(inner.embed_tokens) is nn.Embedding


# Fusing copies the q/k/v and gate/up weights. Worth it where per-op overhead dominates (small models, small
# batches); above this many bytes of copies (a large model on a GPU) the projections run apart instead.
FUSE_LIMIT_BYTES = 256 * 2**20


class _Projections:
    """Several linear layers applied to one input, their outputs concatenated: one matrix product over
    concatenated weights when `fuse`, else one per layer (no weight copies)."""

    def __init__(self, linears: list[nn.Linear], fuse: bool):
        self.parts = [(m.weight, m.bias) for m in linears]
        self.weight = self.bias = None
        if fuse:
            self.weight = torch.cat([m.weight for m in linears])
            if any(m.bias is not None for m in linears):
                self.bias = torch.cat([m.bias if m.bias is not None else m.weight.new_zeros(m.out_features)
                                       for m in linears])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return F.linear(x, self.weight, self.bias)
        return torch.cat([F.linear(x, w, b) for w, b in self.parts], dim=-1)


class _Layer:
    """One decoder layer's weights (q/k/v and gate/up as `_Projections`)."""

    def __init__(self, layer, fuse: bool):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _Projections([attn.q_proj, attn.k_proj, attn.v_proj], fuse)
        self.o, self.o_bias = attn.o_proj.weight, attn.o_proj.bias
        self.gate_up = _Projections([mlp.gate_proj, mlp.up_proj], fuse)
        self.down, self.down_bias = mlp.down_proj.weight, mlp.down_proj.bias
        self.norm_in = (layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        self.norm_post = (layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
        self.scaling = attn.scaling
        self.intermediate = mlp.gate_proj.weight.shape[0]


def _fused_bytes(layers) -> int:
    """Bytes the fused q/k/v and gate/up weight copies of `layers` take."""
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
    return sum(layer.get_submodule(n).weight.nbytes for layer in layers for n in names)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The Llama RMSNorm, op for op: in fp32, then the weight times the result cast back."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


class LeanDecoder:
    """Decoding steps of `model` (see `lean_applicable`) against a podium sampling cache (`podium.generation.kv_cache`
    or `SharedPrefixCache`)."""

    def __init__(self, model):
        inner = model.model
        config = model.config
        self.rotary = inner.rotary_emb
        self.embed = inner.embed_tokens.weight
        self.final_norm = (inner.norm.weight, inner.norm.variance_epsilon)
        self.lm_head, self.lm_head_bias = model.lm_head.weight, model.lm_head.bias
        fuse = _fused_bytes(inner.layers) <= FUSE_LIMIT_BYTES
        self.layers = [_Layer(layer, fuse) for layer in inner.layers]
        attn = inner.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache, attention_mask: torch.Tensor | None):
        """Logits `[rows, V]` of the next token after `tokens` `[rows]` at `positions` `[rows]`.

        `cache` gains each layer's keys and values; `attention_mask` `[rows, columns]` (1 = visible, the cache's
        columns plus this token's) is the fanned-out cache's padding mask, None with a `SharedPrefixCache`.
        """
        rows = tokens.shape[0]
        H, G, d = self.heads, self.kv_heads, self.head_dim
        x = F.embedding(tokens, self.embed)  # [rows, hidden]
        cos, sin = self.rotary(x[:, None], positions[:, None])  # [rows, 1, d]: one row of cos/sin per head
        shared = isinstance(cache, SharedPrefixCache)
        mask = None if shared else attention_mask.bool()[:, None, None, :]
        for i, w in enumerate(self.layers):
            h = rms_norm(x, *w.norm_in)
            qkv = w.qkv(h).view(rows, H + 2 * G, d)
            qk = qkv[:, : H + G]
            qk = qk * cos + rotate_half(qk) * sin
            q = qk[:, :H, None, :]  # [rows, H, 1, d]
            keys, values = cache.layers[i].update(qk[:, H:, None, :], qkv[:, H + G:, None, :])
            if shared:
                out = attend(cache, i, q, keys, values, w.scaling)[0]
            else:
                out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=w.scaling,
                                                     enable_gqa=H != G)
            x = x + F.linear(out.reshape(rows, H * d), w.o, w.o_bias)
            h = rms_norm(x, *w.norm_post)
            gate_up = w.gate_up(h)
            h = F.silu(gate_up[:, : w.intermediate]) * gate_up[:, w.intermediate:]
            x = x + F.linear(h, w.down, w.down_bias)
        return F.linear(rms_norm(x, *self.final_norm), self.lm_head, self.lm_head_bias)
