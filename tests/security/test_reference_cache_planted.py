"""The reference log-prob cache (~/.cache/podium) outlives runs and may be shared: what is planted there is
never unpickled, and a link there never redirects a write."""

from __future__ import annotations

import torch
from tests.pref_helpers import PAIRS, TINY
from tests.security.planting import plant_pickle, snapshot

from podium.data.preference import tokenize_pairs
from podium.models.tiny import build_tiny_model
from podium.training import reference


def fill(cache):
    model, tok = build_tiny_model(seed=0, **TINY)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    truth, _ = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=cache)
    (entry,) = cache.glob("*.safetensors")
    return model, tok, examples, truth, entry


def test_pickle_in_place_of_a_cache_entry_does_not_run(tmp_path):
    model, tok, examples, truth, entry = fill(tmp_path / "cache")
    marker = tmp_path / "PWNED"
    plant_pickle(entry, marker)
    again, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path / "cache")
    assert not hit and not marker.exists()
    torch.testing.assert_close(again, truth, rtol=0, atol=0)


def test_symlinked_cache_entry_is_replaced_not_followed(tmp_path):
    model, tok, examples, truth, entry = fill(tmp_path / "cache")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("user data")
    entry.unlink()
    entry.symlink_to(outside / "precious.txt")
    before = snapshot(outside)
    again, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=tmp_path / "cache")
    assert not hit and not entry.is_symlink()
    assert snapshot(outside) == before
    torch.testing.assert_close(again, truth, rtol=0, atol=0)
