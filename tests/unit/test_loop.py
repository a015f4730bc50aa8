"""Invariances of the training loop: accumulation equivalence, exact resume, non-finite stop."""

import json
from functools import partial

import pytest
import torch

from podium.data.chat import tokenize_sft
from podium.data.collate import pad_batch
from podium.errors import PodiumError
from podium.models.tiny import build_tiny_model
from podium.training.loop import train_loop
from podium.training.settings import TrainSettings
from podium.training.sft import sft_objective


def data(tok, n=16):
    return [tokenize_sft({"prompt": [{"role": "user", "content": f"What is {i} + {i + 1}?"}],
                          "completion": [{"role": "assistant", "content": f"{i} + {i + 1} = {2 * i + 1}"}]}, tok)
            for i in range(n)]


def run(tmp, objective=sft_objective, **kw):
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    s = TrainSettings(**{"learning_rate": 1e-2, "max_steps": 4, "batch_size": 4, "seed": 0, **kw})
    summary = train_loop(model, objective, data(tok), partial(pad_batch, pad_id=tok.pad_token_id), s, tmp,
                         tokenizer=tok, show_progress=False)
    return model, summary


def same_weights(a, b, atol=1e-6):
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=atol, msg=n)


@pytest.mark.parametrize("optimizer,atol", [("sgd", 1e-7), ("adamw", 5e-5)])
def test_accumulation_equivalence(tmp_path, optimizer, atol):
    # 4 x 1, 2 x 2 and 1 x 4 see the same examples per step; token-summed losses make the
    # gradients equal up to float rounding, which Adam's normalisation magnifies at lr 1e-2: measured
    # 2.9e-6 on one thread, 1.7e-5 on two (other reduction orders). A wrong scaling moves weights by ~1e-2.
    a, _ = run(tmp_path / "a", batch_size=4, gradient_accumulation_steps=1, optimizer=optimizer)
    b, _ = run(tmp_path / "b", batch_size=2, gradient_accumulation_steps=2, optimizer=optimizer)
    same_weights(a, b, atol)
    c, _ = run(tmp_path / "c", batch_size=1, gradient_accumulation_steps=4, optimizer=optimizer)
    same_weights(a, c, atol)


def test_metrics_file_and_final_model(tmp_path):
    _, summary = run(tmp_path, lr_scheduler="cosine", warmup_ratio=0.25)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert {"loss", "lr", "grad_norm", "examples_per_second", "tokens_per_second"} <= set(lines[0])
    assert lines[0]["lr"] < lines[1]["lr"]  # warmup
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "checkpoints").exists()
    assert summary["steps"] == 4


class Crash(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop", "sgd"])
def test_resume_equals_uninterrupted(tmp_path, optimizer):
    """Bit for bit: the checkpoint (safetensors + JSON) restores weights, optimizer, scheduler and generators."""
    full, _ = run(tmp_path / "full", save_steps=2, max_steps=6, optimizer=optimizer)
    calls = {"n": 0}

    def crashing(model, batch):
        calls["n"] += 1
        if calls["n"] == 4 * 1 + 1:  # the 5th micro-batch: step 5, after the step-4 checkpoint
            raise Crash
        return sft_objective(model, batch)

    with pytest.raises(Crash):
        run(tmp_path / "cut", objective=crashing, save_steps=2, max_steps=6, optimizer=optimizer)
    assert (tmp_path / "cut" / "checkpoints" / "step-4").exists()
    resumed, _ = run(tmp_path / "cut", save_steps=2, max_steps=6, optimizer=optimizer)
    same_weights(full, resumed, atol=0)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_stops_with_step(tmp_path):
    calls = {"n": 0}

    def nan_at_3(model, batch):
        calls["n"] += 1
        loss, m = sft_objective(model, batch)
        return (loss * float("nan") if calls["n"] == 3 else loss), m

    with pytest.raises(PodiumError, match=r"non-finite loss \(nan\) at step 3; last good checkpoint: .*step-2"):
        run(tmp_path, objective=nan_at_3, save_steps=2, max_steps=5)


def test_too_small_dataset(tmp_path):
    with pytest.raises(PodiumError, match="fewer than one global batch"):
        run(tmp_path, batch_size=32)
