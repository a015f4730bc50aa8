"""Reference log-probs: computed once, cached on disk by weights + data, reused; changed data misses."""

from __future__ import annotations

import torch
from tests.pref_helpers import PAIRS, TINY

from podium.data.preference import tokenize_pairs
from podium.models.tiny import build_tiny_model
from podium.training import reference


def test_cache_hit_and_miss(tmp_path, monkeypatch):
    model, tok = build_tiny_model(seed=0, **TINY)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    calls = []
    real = reference.compute_reference_logps
    monkeypatch.setattr(reference, "compute_reference_logps", lambda *a, **k: calls.append(1) or real(*a, **k))

    first, hit1 = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path)
    second, hit2 = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    torch.testing.assert_close(first, second)
    assert first.shape == (len(examples), 2)

    changed, _ = tokenize_pairs(PAIRS[:-1] + [{"prompt": "new", "chosen": "a", "rejected": "b"}], tok, 64)
    _, hit3 = reference.cached_reference_logps(model, changed, tok.pad_token_id, cache_dir=tmp_path)
    assert hit3 is False and len(calls) == 2

    other, _ = build_tiny_model(tok, seed=1, **TINY)
    _, hit4 = reference.cached_reference_logps(other, examples, tok.pad_token_id, cache_dir=tmp_path)
    assert hit4 is False and len(calls) == 3


def test_lora_reference_is_the_adapter_disabled_model():
    """With non-zero LoRA weights the policy differs from the base; the reference equals the base."""
    import copy

    from peft import LoraConfig, get_peft_model

    model, tok = build_tiny_model(seed=0, **TINY)
    base = copy.deepcopy(model)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    expected = reference.compute_reference_logps(base, examples, tok.pad_token_id)
    disabled = reference.compute_reference_logps(lora, examples, tok.pad_token_id, adapter_disabled=True)
    enabled = reference.compute_reference_logps(lora, examples, tok.pad_token_id)
    torch.testing.assert_close(disabled, expected)
    assert not torch.allclose(enabled, expected)
    assert reference.weights_hash(lora, skip_adapters=True) != reference.weights_hash(lora)
