"""Sequence log-probs: plain, prefix-shared and padding-free forwards agree; sums match a naive forward."""

from __future__ import annotations

import contextlib

import pytest
import torch
from tests.pref_helpers import PAIRS, TINY

from podium.data.preference import tokenize_pairs
from podium.models.tiny import build_tiny_model
from podium.training.logps import gathered_logps, sequence_logps, token_logps
from podium.training.pair_layout import pack_pairs

LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def setup(request):
    model, tok = build_tiny_model(seed=0, **TINY)
    model.config._attn_implementation = request.param
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    return model, tok, examples


def naive_logps(model, ex):
    """log p(completion | prompt) from a full-vocab forward of one unpadded sequence, for each side."""
    out = []
    for side in ("chosen_ids", "rejected_ids"):
        ids = torch.tensor([ex["prompt_ids"] + ex[side]])
        logits = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        tok = ids[0, 1:]
        lp = logits.gather(-1, tok[:, None])[:, 0][len(ex["prompt_ids"]) - 1:]
        out.append(lp.sum())
    return out


@pytest.mark.parametrize("prefix_sharing,padding_free", LAYOUTS)
def test_layouts_match_naive_forward(setup, prefix_sharing, padding_free):
    model, tok, examples = setup
    batch = pack_pairs(examples, tok.pad_token_id, prefix_sharing=prefix_sharing, padding_free=padding_free)
    with torch.no_grad():
        logps, counts = sequence_logps(model, batch)
        expected = [naive_logps(model, ex) for ex in examples]
    B = len(examples)
    for i, (c, r) in enumerate(expected):
        assert logps[i].item() == pytest.approx(c.item(), rel=1e-5, abs=1e-5)
        assert logps[B + i].item() == pytest.approx(r.item(), rel=1e-5, abs=1e-5)
    assert counts[:B].tolist() == [len(ex["chosen_ids"]) for ex in examples]
    assert counts[B:].tolist() == [len(ex["rejected_ids"]) for ex in examples]


def test_gradients_agree_across_layouts(setup):
    model, tok, examples = setup
    grads = []
    for ps, pf in LAYOUTS:
        model.zero_grad()
        logps, _ = sequence_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=ps, padding_free=pf))
        (logps[: len(examples)] - 0.5 * logps[len(examples):]).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    for g in grads[1:]:
        torch.testing.assert_close(g, grads[0], rtol=1e-4, atol=1e-6)


def test_prefix_sharing_shares_the_prompt(setup):
    """Prefix sharing computes P + C + R + 1 tokens per pair (one forward of the B prompts but their last
    token, then 2B rows [last prompt token, completion] on its cache) instead of 2 rows of P + C and P + R."""
    _, tok, examples = setup
    shared = pack_pairs(examples, tok.pad_token_id, prefix_sharing=True)
    plain = pack_pairs(examples, tok.pad_token_id)
    expected = sum(len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)
    assert shared["num_tokens"] == expected + len(examples)
    assert shared["prompt_mask"].sum() == sum(len(e["prompt_ids"]) - 1 for e in examples)
    assert plain["num_tokens"] == expected + sum(len(e["prompt_ids"]) for e in examples)
    assert shared["prompt_ids"].shape[0] == len(examples) and shared["completion_ids"].shape[0] == 2 * len(examples)
    assert plain["input_ids"].shape[0] == 2 * len(examples)
    packed = pack_pairs(examples, tok.pad_token_id, prefix_sharing=True, padding_free=True)
    assert packed["input_ids"].shape == (1, expected)


def test_an_empty_prompt_keeps_the_one_row_layout(setup):
    """A pair with no prompt tokens has no prompt forward to continue: the batch uses one row per pair."""
    model, tok, examples = setup
    empty = [{**examples[0], "prompt_ids": []}, *examples[1:]]
    batch = pack_pairs(empty, tok.pad_token_id, prefix_sharing=True)
    assert batch.get("layout") is None and batch["input_ids"].shape[0] == len(empty)
    with torch.no_grad():
        logps, _ = sequence_logps(model, batch)
        plain, _ = sequence_logps(model, pack_pairs(empty, tok.pad_token_id))
    torch.testing.assert_close(logps, plain, rtol=1e-5, atol=1e-5)


def test_gathered_logps_worked_example():
    """logits [0, ln 3] -> softmax [1/4, 3/4]; target 1 -> ln(3/4) = -0.28768; chunking does not change it."""
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0))], [0.0, 0.0]])
    out = gathered_logps(logits, torch.tensor([0, 1]), torch.tensor([1, 0]), chunk_size=1)
    assert out.tolist() == pytest.approx([-0.2876821, -0.6931472], abs=1e-6)


def test_token_logps_worked_example():
    """One target per row: logits [0, ln 3] -> log(3/4) for target 1; [ln 2, 0, 0] -> log(2/4) for target 0."""
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)), -float("inf")],
                           [torch.log(torch.tensor(2.0)), 0.0, 0.0]])
    out = token_logps(logits, torch.tensor([1, 0]), chunk_size=1)
    assert out.tolist() == pytest.approx([-0.2876821, -0.6931472], abs=1e-6)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_the_prompt_forward_last_layer_writes_the_full_layers_keys_and_values(kv_heads):
    """keys_values_only: the cache holds what the whole last layer writes; log-probs and gradients are those
    of the whole layer."""
    from transformers import DynamicCache

    import podium.training.prompt_pass as prompt_pass

    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                                  num_kv_heads=kv_heads, seed=3)
    assert prompt_pass.last_layer(model) is model.model.layers[-1]
    ids, mask = torch.tensor([[0, 0, 5, 9, 14], [3, 8, 2, 7, 1]]), torch.tensor([[0, 0, 1, 1, 1], [1] * 5])
    caches = []
    for only in (True, False):
        cache = DynamicCache(config=model.config)
        with prompt_pass.keys_values_only(model) if only else contextlib.nullcontext():
            model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), cache=cache,
                  use_cache=True)
        caches.append(cache)
    assert "forward" not in vars(model.model.layers[-1])  # restored
    for a, b in zip(caches[0].layers, caches[1].layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)

    examples = [{"prompt_ids": tok.encode("What is 12 + 30?"), "chosen_ids": tok.encode(" 42"),
                 "rejected_ids": tok.encode(" 41 or so")}, {"prompt_ids": tok.encode("a"),
                 "chosen_ids": tok.encode("b"), "rejected_ids": tok.encode("cd")}]
    results = []
    for only in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            if not only:
                mp.setattr(prompt_pass, "last_layer", lambda m: None)
            model.zero_grad()
            logps, _ = sequence_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=True))
            logps.sum().backward()
            results.append((logps.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-7)
