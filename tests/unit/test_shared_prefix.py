"""Shared-prefix decoding (one copy of a prompt's cache for its K samples) = decoding a fanned-out cache."""

import pytest
import torch

import podium.generation.hf_sampler as hf_sampler
from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams
from podium.generation.shared_prefix import NAME
from podium.models.introspect import full_causal_attention as applicable
from podium.models.tiny import build_tiny_model

PROMPTS = ["a", "the quick brown fox", [{"role": "user", "content": "What is 2+3?"}], "12 + 30 =", "zz"]
PARAMS = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=14)


def decode(model, tok, shared: bool, monkeypatch, batch_size: int, greedy: bool = False):
    monkeypatch.setattr(hf_sampler, "full_causal_attention", lambda config: shared and applicable(config))
    params = SamplingParams(temperature=0, max_new_tokens=14) if greedy else PARAMS
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = list(range(10, 22))  # rows stop at different steps: rows are dropped
    try:
        return TransformersSampler(model, tok, batch_size=batch_size).generate(PROMPTS, 3, params, seed=11)
    finally:
        model.generation_config.eos_token_id = saved


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # multi-head, grouped-query (2 queries per key head), multi-query
@pytest.mark.parametrize("batch_size", [15, 4])
def test_shared_prefix_equals_fanned_out_cache(monkeypatch, kv_heads, batch_size):
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                                  num_kv_heads=kv_heads, seed=5)
    model.eval()
    assert applicable(model.config)
    shared = decode(model, tok, True, monkeypatch, batch_size)
    fanned = decode(model, tok, False, monkeypatch, batch_size)
    assert [[c.token_ids for c in r] for r in shared] == [[c.token_ids for c in r] for r in fanned]
    assert len({c.num_tokens for r in shared for c in r}) > 1, "rows should stop at different steps"
    for r_s, r_f in zip(shared, fanned):
        for a, b in zip(r_s, r_f):
            assert a.logp_sum == pytest.approx(b.logp_sum, abs=1e-4)
    assert model.config._attn_implementation == "sdpa"  # restored after decoding


def test_attention_implementation_is_restored_after_an_error(monkeypatch):
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, seed=5)
    model.eval()
    calls = {"n": 0}
    forward = model.forward

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            assert model.config._attn_implementation == NAME  # inside a decoding step
            raise RuntimeError("boom")
        return forward(*a, **kw)

    monkeypatch.setattr(model, "forward", failing)
    with pytest.raises(RuntimeError, match="boom"):
        TransformersSampler(model, tok).generate(PROMPTS, 2, PARAMS)
    assert model.config._attn_implementation == "sdpa"


def test_not_applied_where_it_would_not_be_exact():
    from transformers import Gemma2Config, MistralConfig

    assert not applicable(MistralConfig(sliding_window=8))  # window measured over the fanned cache's columns
    assert applicable(MistralConfig(sliding_window=None))
    assert not applicable(Gemma2Config())  # soft-capping, local layers
    assert not applicable(torch.nn.Module())  # no config fields at all: an unknown architecture
