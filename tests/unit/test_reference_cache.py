"""Reference log-probs: computed once, cached on disk by weights + data, reused; changed data misses."""

from __future__ import annotations

import logging

import pytest
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


def _entry(tmp_path, model, tok):
    """Fill the cache once; returns (examples, path of the entry, the true log-probs)."""
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    truth, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path)
    assert not hit
    (path,) = tmp_path.glob("*.safetensors")
    return examples, path, truth


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[:-5])


def _damage_shape(path):  # a well-formed file with one pair too few, as an older or foreign writer might leave
    from safetensors.torch import save_file

    save_file({"reference_logps": torch.zeros(len(PAIRS) - 1, 2)}, str(path))


def _damage_values(path):  # values changed, metadata (and its checksum) kept
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, t = f.metadata(), f.get_tensor("reference_logps")
    save_file({"reference_logps": t + 1.0}, str(path), metadata=meta)


def _damage_unverified(path):  # right shape and values, but no metadata: what podium wrote before
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path))


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_shape, _damage_values, _damage_unverified,
                                    lambda p: p.write_text("junk")],
                         ids=["truncated", "wrong_shape", "edited_values", "no_checksum", "not_safetensors"])
def test_bad_cache_entry_is_recomputed_and_rewritten(tmp_path, damage, caplog):
    """The probe: a corrupted or wrong-shape entry broke every later run; edited values were used silently."""
    model, tok = build_tiny_model(seed=0, **TINY)
    examples, path, truth = _entry(tmp_path, model, tok)
    damage(path)
    with caplog.at_level(logging.WARNING, logger="podium"):
        again, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path)
    assert hit is False and "recomputing" in caplog.text
    torch.testing.assert_close(again, truth, rtol=0, atol=0)
    third, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path)
    assert hit is True  # the entry was rewritten and now verifies
    torch.testing.assert_close(third, truth, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind
