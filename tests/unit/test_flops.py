"""Model FLOPs per batch against torch's own FLOP counter, the peak-rate cache, MFU in the loop's metrics."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from tests.loop_helpers import sft_examples
from tests.pref_helpers import PAIRS, TINY
from torch.utils.flop_counter import FlopCounterMode

import podium.training.flops as flops_mod
from podium.data.collate import pad_batch
from podium.data.preference import tokenize_pairs
from podium.models.tiny import build_tiny_model
from podium.training.flops import TrainingFlops, peak_flops
from podium.training.loop import train_loop
from podium.training.pair_layout import pack_pairs
from podium.training.settings import TrainSettings
from podium.training.sft import sft_objective


def counted(model, ids) -> float:
    """FLOPs torch's FlopCounterMode sees in one forward + backward of full logits (eager attention:
    the score and value products are plain bmm over every query-key pair, masked or not)."""
    with FlopCounterMode(display=False) as fc:
        model(input_ids=ids).logits.sum().backward()
    return float(sum(fc.get_flop_counts()["Global"].values()))


def test_training_flops_equal_torch_counter():
    """Rows of T = 20 tokens: torch counts T^2 query-key pairs per row and layer, the causal mask lets
    T (T + 1) / 2 through; with that correction the counts agree exactly (matmuls, LM head, attention)."""
    model, _ = build_tiny_model(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4)
    model.config._attn_implementation = "eager"
    ids = torch.randint(10, 90, (3, 20))
    f = TrainingFlops.from_model(model)
    ours = f({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    causal_pairs = 3 * 20 * 21 / 2
    attention = 12 * f.attention_width * causal_pairs * 2  # 2 layers, forward 4 d per pair, x3 for training
    assert ours - attention + attention * (20 * 20) / (20 * 21 / 2) == counted(model, ids)


def test_frozen_weights_cost_no_weight_gradient():
    """Frozen matmuls between trained parameters (here: trained embeddings below, a trained head above,
    as LoRA adapters sit between frozen layers) still pass gradients to their inputs (2 FLOPs per weight
    and token) but compute none for themselves: 4N per token instead of 6N."""
    model, _ = build_tiny_model(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4)
    model.config._attn_implementation = "eager"
    for name, p in model.named_parameters():
        p.requires_grad_("lm_head" in name or "embed_tokens" in name)
    ids = torch.randint(10, 90, (2, 12))
    f = TrainingFlops.from_model(model)
    assert f.body_trainable == 0 and f.head_trainable
    full = 12 * f.attention_width * 2 * (12 * 12) * 2
    causal = 12 * f.attention_width * 2 * (12 * 13 / 2) * 2
    ours = f({"input_ids": ids})
    assert ours - causal + full == counted(model, ids)


def test_prefix_sharing_counts_the_prompt_once():
    """Worked example: the shared layout's count is the plain layout's minus one forward + backward of each
    prompt but its last token (its tokens' matmuls and causal attention pairs; the last prompt token runs in
    both completion rows, as in the plain layout, and predicts the first completion token there), minus what
    those tokens skip in the last layer, which computes only their keys and values: its other weights
    (everything but k_proj and v_proj) and its attention."""
    model, tok = build_tiny_model(seed=0, **TINY)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    f = TrainingFlops.from_model(model)
    last = model.model.layers[-1]
    kept = last.self_attn.k_proj.weight.numel() + last.self_attn.v_proj.weight.numel()
    skip = sum(p.numel() for p in last.parameters() if p.dim() >= 2) - kept
    assert f.prompt_skip == f.prompt_skip_trainable == skip
    plain = f(pack_pairs(examples, tok.pad_token_id))
    shared = f(pack_pairs(examples, tok.pad_token_id, prefix_sharing=True))
    body = [len(e["prompt_ids"]) - 1 for e in examples]
    once = sum(6 * f.body * n + 12 * f.attention_width * len(f.windows) * n * (n + 1) / 2 for n in body)
    skipped = sum(6 * skip * n + 12 * f.attention_width * n * (n + 1) / 2 for n in body)
    assert plain - shared == pytest.approx(once + skipped, rel=1e-12)


def test_mixture_of_experts_counts_the_experts_a_token_uses():
    from transformers import MixtralConfig, MixtralForCausalLM

    model = MixtralForCausalLM(MixtralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                             num_experts_per_tok=2, vocab_size=100))
    f = TrainingFlops.from_model(model)
    attention = 2 * (32 * 32 + 2 * 16 * 32 + 32 * 32)  # q, k, v, o per layer
    router = 2 * 4 * 32
    experts = 2 * 4 * (128 * 32 + 32 * 64) * 2 / 4  # 2 of 4 experts
    assert f.body == attention + router + experts
    assert f.head == 100 * 32


def test_sliding_window_caps_the_pairs():
    from transformers import MistralConfig, MistralForCausalLM

    model = MistralForCausalLM(MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                                             sliding_window=4))
    f = TrainingFlops.from_model(model)
    assert f.windows == (4, 4)
    ids = torch.ones((1, 10), dtype=torch.long)
    # positions 0..9 see 1, 2, 3, 4, 4, ... keys: 1 + 2 + 3 + 7 * 4 = 34 pairs per layer
    matmuls = 6 * f.body * 10 + 6 * f.head * 10
    assert f({"input_ids": ids}) == matmuls + 12 * f.attention_width * 34 * 2


def test_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PODIUM_CACHE", str(tmp_path))
    monkeypatch.delenv(flops_mod.PEAK_ENV, raising=False)
    calls = []
    monkeypatch.setattr(flops_mod, "measure_peak_flops", lambda device, dtype: calls.append(dtype) or 5e10)
    assert peak_flops("cpu", torch.float32) == 5e10
    assert peak_flops("cpu", torch.float32) == 5e10
    assert calls == [torch.float32]
    peak_flops("cpu", torch.bfloat16)  # another dtype is another entry
    assert calls == [torch.float32, torch.bfloat16]
    cache = json.loads((tmp_path / "peak_flops.json").read_text())
    key = next(iter(cache))
    assert key.startswith("cpu|") and "|float32|threads=" in key and "torch=" in key
    (tmp_path / "peak_flops.json").write_text("{not json")  # a damaged cache is measured again
    assert peak_flops("cpu", torch.float32) == 5e10 and len(calls) == 3
    monkeypatch.setenv(flops_mod.PEAK_ENV, "1e12")
    assert peak_flops("cpu", torch.float32) == 1e12 and len(calls) == 3


def test_measured_peak_is_a_plausible_rate():
    rate = flops_mod.measure_peak_flops(torch.device("cpu"), torch.float32, seconds=0.05)
    assert 1e8 < rate < 1e14


def test_loop_logs_flops_and_mfu(tmp_path, monkeypatch):
    monkeypatch.setenv(flops_mod.PEAK_ENV, "1e11")
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    examples = sft_examples(tok)
    s = TrainSettings(learning_rate=1e-3, max_steps=2, batch_size=4, seed=0)
    summary = train_loop(model, sft_objective, examples, partial(pad_batch, pad_id=tok.pad_token_id), s, tmp_path,
                         tokenizer=tok, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["flops_per_second"] > 0
        assert r["mfu"] == pytest.approx(r["flops_per_second"] / 1e11)
    assert summary["peak_flops_per_second"] == 1e11
    assert 0 < summary["mfu"] == pytest.approx(summary["flops_per_second"] / 1e11)
