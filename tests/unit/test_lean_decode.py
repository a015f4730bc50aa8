"""The lean decoding step computes what the model's own forward computes (logits, sampled tokens)."""

import pytest
import torch
from torch import nn
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import podium.generation.lean_decode as lean_decode
from podium.generation.hf_sampler import TransformersSampler
from podium.generation.kv_cache import preallocated_cache
from podium.generation.lean_decode import LeanDecoder, lean_applicable
from podium.generation.sampler import SamplingParams
from podium.models.tiny import build_tiny_model

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=128)


def _model(cls, config_cls, **extra):
    torch.manual_seed(3)
    model = cls(config_cls(**SMALL, **extra))
    with torch.no_grad():  # transformers initialises biases to zero: make them count
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    model.config._attn_implementation = "sdpa"
    return model.eval()


FAMILIES = {
    "llama-gqa": lambda: _model(LlamaForCausalLM, LlamaConfig, num_key_value_heads=2),
    "llama-rope-scaled": lambda: _model(LlamaForCausalLM, LlamaConfig, num_key_value_heads=1, rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "mistral": lambda: _model(MistralForCausalLM, MistralConfig, num_key_value_heads=2, sliding_window=None,
                              head_dim=16),
    "llama-biases": lambda: _model(LlamaForCausalLM, LlamaConfig, attention_bias=True, mlp_bias=True),
    "qwen2-bias": lambda: _model(Qwen2ForCausalLM, Qwen2Config, num_key_value_heads=2),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("fuse", [True, False])  # fused projections, or apart (above FUSE_LIMIT_BYTES)
def test_lean_step_equals_the_models_forward(family, fuse, monkeypatch):
    model = FAMILIES[family]()
    assert lean_applicable(model)
    monkeypatch.setattr(lean_decode, "FUSE_LIMIT_BYTES", 2**40 if fuse else 0)
    lean = LeanDecoder(model)
    assert (lean.layers[0].qkv.weight is not None) == fuse
    ids = torch.tensor([[0, 0, 5, 9, 14], [3, 8, 2, 7, 1]])  # row 0 left-padded
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        ours, theirs = preallocated_cache(model.config, reserve=4), preallocated_cache(model.config, reserve=4)
        for cache in (ours, theirs):
            model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        tokens, pos = torch.tensor([11, 40]), positions[:, -1] + 1
        for _ in range(3):
            mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
            got = lean.step(tokens, pos, ours, mask)
            want = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=pos[:, None], cache=theirs,
                         use_cache=True).logits[:, -1]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            tokens, pos = got.argmax(-1), pos + 1


@pytest.mark.parametrize("family", ["llama-gqa", "qwen2-bias"])
@pytest.mark.parametrize("batch_size", [32, 5])  # shared-prefix attention on a full grid / after splits and drops
def test_sampler_draws_the_same_tokens_with_and_without_the_lean_step(family, batch_size):
    model = FAMILIES[family]()
    tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4)[1]
    model.generation_config.eos_token_id = list(range(10, 20))  # rows stop at different steps
    prompts = ["a", "the quick brown fox", "12 + 30 =", "zz"]
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=16)
    lean = TransformersSampler(model, tok, batch_size=batch_size).generate(prompts, 3, params, seed=2)
    plain = TransformersSampler(model, tok, batch_size=batch_size, lean=False).generate(prompts, 3, params, seed=2)
    assert [[c.token_ids for c in r] for r in lean] == [[c.token_ids for c in r] for r in plain]
    assert len({c.num_tokens for r in lean for c in r}) > 1
    for r1, r2 in zip(lean, plain):
        for a, b in zip(r1, r2):
            assert a.logp_sum == pytest.approx(b.logp_sum, abs=1e-4)
            assert a.finish_reason == b.finish_reason


def test_not_applied_where_the_step_would_differ():
    assert not lean_applicable(_model(MistralForCausalLM, MistralConfig, sliding_window=8))
    assert not lean_applicable(_model(Gemma2ForCausalLM, Gemma2Config, head_dim=8))
    assert not lean_applicable(_model(MixtralForCausalLM, MixtralConfig, num_local_experts=2, num_experts_per_tok=1))
    assert not lean_applicable(_model(LlamaForCausalLM, LlamaConfig, hidden_act="gelu"))

    hooked = FAMILIES["llama-gqa"]()
    hooked.model.layers[0].mlp.register_forward_hook(lambda *a: None)
    assert not lean_applicable(hooked)

    wrapped = FAMILIES["llama-gqa"]()
    wrapped.forward = wrapped.forward  # as accelerate's autocast wrapper does
    assert not lean_applicable(wrapped)

    class LoraLinear(nn.Linear):  # an adapter layer computes more than its weight
        pass

    adapted = FAMILIES["llama-gqa"]()
    q = adapted.model.layers[1].self_attn.q_proj
    adapted.model.layers[1].self_attn.q_proj = LoraLinear(q.in_features, q.out_features, bias=False)
    assert not lean_applicable(adapted)
