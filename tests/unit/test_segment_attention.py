"""Packed SFT rows attended one example at a time give the padded forward's loss and gradients."""

import sys

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

import podium.training.sft as sft
from podium.data.collate import pack_batch, pad_batch
from podium.models.tiny import build_tiny_model
from podium.training.segment_attention import SEGMENTS_NAME, attending_by_segments, segments, segments_applicable
from podium.training.sft import sft_objective


def test_segments_are_the_runs_of_positions():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert segments(pos) == [[(0, 3), (3, 5), (5, 6)], [(0, 6)]]


def _examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, 90, (n,), generator=g).tolist()
        prompt = max(1, n // 3)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss, _ = sft_objective(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("one_row", [False, True])  # rows as long as the longest example / the SFT stage's one row
def test_packed_by_segments_equals_padded_and_masked_packed(monkeypatch, kv_heads, one_row):
    model, _ = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                                num_kv_heads=kv_heads, seed=1)
    assert segments_applicable(model)
    examples = _examples([17, 5, 30, 9, 12, 3, 21])
    packed = pack_batch(examples, pad_id=0, capacity=sys.maxsize if one_row else None)
    assert len(packed["input_ids"]) == 1 if one_row else len(packed["input_ids"]) > 1
    assert any(len(r) > 1 for r in segments(packed["position_ids"]))  # rows hold several examples
    loss_seg, grads_seg = _loss_and_grads(model, packed)
    loss_pad, grads_pad = _loss_and_grads(model, pad_batch(examples, pad_id=0))
    monkeypatch.setattr(sft, "segments_applicable", lambda m: False)  # transformers' block-diagonal mask
    loss_mask, grads_mask = _loss_and_grads(model, packed)
    for loss, grads in ((loss_pad, grads_pad), (loss_mask, grads_mask)):
        torch.testing.assert_close(loss_seg, loss, rtol=1e-5, atol=1e-5)
        for name, g in grads.items():
            torch.testing.assert_close(grads_seg[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert model.config._attn_implementation == "sdpa"


def test_implementation_restored_after_an_error():
    model, _ = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4)
    with pytest.raises(RuntimeError, match="boom"):
        with attending_by_segments(model, torch.zeros(1, 4, dtype=torch.long)):
            assert model.config._attn_implementation == SEGMENTS_NAME
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_not_applied_where_it_would_differ():
    eager, _ = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4)
    eager.config._attn_implementation = "eager"
    assert not segments_applicable(eager)
    small = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4)
    windowed = MistralForCausalLM(MistralConfig(**small, sliding_window=4))
    windowed.config._attn_implementation = "sdpa"
    assert not segments_applicable(windowed)
    gemma = Gemma2ForCausalLM(Gemma2Config(**small, head_dim=8))
    gemma.config._attn_implementation = "sdpa"
    assert not segments_applicable(gemma)  # soft-capping and local layers
    dropout, _ = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4)
    dropout.config.attention_dropout = 0.1
    assert not segments_applicable(dropout)


def test_gradient_checkpointing_turns_it_off_and_keeps_the_gradients():
    """A checkpointed layer is recomputed in the backward, outside the routing: per-segment attention must be
    off there (it failed with torch's CheckpointError, and a recomputation with the same tensor count would
    have attended across examples). Loss and gradients equal the padded forward's without checkpointing."""
    model, _ = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, seed=2)
    examples = _examples([17, 5, 30, 9])
    packed = pack_batch(examples, pad_id=0, capacity=sys.maxsize)
    model.train()
    loss_pad, grads_pad = _loss_and_grads(model, pad_batch(examples, pad_id=0))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert not segments_applicable(model)
    loss_ckpt, grads_ckpt = _loss_and_grads(model, packed)
    torch.testing.assert_close(loss_ckpt, loss_pad, rtol=1e-5, atol=1e-5)
    for name, g in grads_pad.items():
        torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_sft_stage_packs_under_gradient_checkpointing(tmp_path, tiny_dir):
    """The SFT stage with packing and gradient checkpointing trains (Rhea's sft stage sets both)."""
    import json

    from podium.stages import run_stage

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(8)))
    common = {"model": str(tiny_dir), "data": str(data), "max_steps": 2, "batch_size": 4, "packing": True}
    plain = run_stage("sft", common, tmp_path / "plain")
    ckpt = run_stage("sft", {**common, "gradient_checkpointing": True}, tmp_path / "ckpt")
    assert ckpt["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)
