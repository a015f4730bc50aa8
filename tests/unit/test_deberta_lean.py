"""podium.models.deberta_lean against transformers' own DebertaV2Model.forward, in float64 (the same arithmetic
reordered: equal to 1e-10) and float32 (equal to float rounding), over the configurations it takes."""

from __future__ import annotations

import pytest
import torch
from transformers import DebertaV2Config, DebertaV2Model

from podium.models.deberta_lean import LeanDeberta, supports

BASE = {"vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 64, "position_buckets": 16, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm", "share_att_key": True, "position_biased_input": False, "type_vocab_size": 0,
        "layer_norm_eps": 1e-7, "max_relative_positions": -1, "hidden_act": "gelu"}
VARIANTS = {"deberta-v3 (PairRM)": {}, "own position projections": {"share_att_key": False},
            "c2p only": {"pos_att_type": ["c2p"]}, "p2c only": {"pos_att_type": ["p2c"], "share_att_key": False},
            "no buckets": {"position_buckets": -1, "max_relative_positions": 24, "norm_rel_ebd": "none"},
            "absolute positions too": {"position_biased_input": True, "type_vocab_size": 2,
                                       "max_position_embeddings": 256}}


def model(dtype=torch.float64, **overrides) -> DebertaV2Model:
    torch.manual_seed(0)
    m = DebertaV2Model(DebertaV2Config(**(BASE | overrides))).eval().to(dtype)
    with torch.no_grad():  # weights larger than the init's, so the position terms matter
        for p in m.parameters():
            p.mul_(3.0) if p.dim() > 1 else None
    return m


def states(m, ids, mask, rows):
    hidden = m(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden[torch.arange(len(ids))[:, None], rows]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lean_forward_is_transformers_forward(variant):
    """The states at the asked rows, padded batches included (a padded sequence's real rows), for lengths inside
    and beyond the buckets' linear range; float64 to 1e-10, float32 to 1e-5."""
    for dtype, atol in [(torch.float64, 1e-10), (torch.float32, 1e-5)]:
        m = model(dtype, **VARIANTS[variant])
        lean = LeanDeberta(m)
        g = torch.Generator().manual_seed(1)
        for width, lengths in [(7, [7]), (90, [90, 61]), (200, [150, 200, 33])]:
            ids = torch.randint(5, 300, (len(lengths), width), generator=g)
            mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
            rows = torch.stack([torch.randint(0, n, (3,), generator=g) for n in lengths])
            with torch.inference_mode():
                assert supports(m)
                ours = lean.forward(ids, mask, rows)
                theirs = states(m, ids, mask, rows)
            torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)


def test_position_projections_follow_the_weights():
    """The cached projections of the relative embeddings are recomputed after a weight changes in place."""
    m = model()
    lean = LeanDeberta(m)
    ids, rows = torch.randint(5, 300, (1, 40)), torch.tensor([[0, 5, 39]])
    with torch.inference_mode():
        before = lean.forward(ids, None, rows)
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)  # (not a scaling or a constant: LayerNorm'd inputs would not notice)
        m.encoder.rel_embeddings.weight.add_(torch.randn(m.encoder.rel_embeddings.weight.shape, generator=g,
                                                         dtype=torch.float64))
        m.encoder.layer[1].attention.self.key_proj.weight.add_(torch.randn(32, 32, generator=g, dtype=torch.float64))
    with torch.inference_mode():
        after = lean.forward(ids, None, rows)
        torch.testing.assert_close(after, states(m, ids, torch.ones_like(ids), rows), atol=1e-10, rtol=0)
    assert (after - before).abs().max() > 1e-3


def test_what_it_does_not_take():
    """Training mode, gradients, a convolution layer, or no relative attention: transformers' forward instead."""
    m = model()
    with torch.no_grad():
        assert supports(m)
        assert not supports(model(conv_kernel_size=3))
        assert not supports(model(relative_attention=False))
        assert not supports(m.train())
    m.eval()
    assert not supports(m)  # gradients enabled
