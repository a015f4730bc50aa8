"""Training to a target: the loop's stop_when hook and SFT's `stop_at`."""

import json
from functools import partial

import pytest
from tests.unit.test_loop import data

from podium.data.collate import pad_batch
from podium.errors import ConfigError
from podium.models.io import save_model
from podium.models.tiny import build_tiny_model
from podium.stages import run_stage
from podium.training import sft as sft_module
from podium.training.loop import train_loop
from podium.training.settings import TrainSettings
from podium.training.sft import sft_objective


def test_stop_when_ends_training_after_the_step_that_meets_it(tmp_path):
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    seen = []

    def evaluate(m):
        seen.append(len(seen) + 1)
        return {"score": 0.1 * len(seen)}

    s = TrainSettings(learning_rate=1e-3, max_steps=20, batch_size=4, seed=0, logging_steps=5)
    summary = train_loop(model, sft_objective, data(tok), partial(pad_batch, pad_id=tok.pad_token_id), s, tmp_path,
                         tokenizer=tok, show_progress=False, evaluate=evaluate, evaluate_every=2,
                         stop_when=lambda r: r["eval/score"] >= 0.25)
    # Checks at steps 2, 4, 6 score 0.1, 0.2, 0.3: training stops after step 6, and that record is logged.
    assert summary["steps"] == 6 and seen == [1, 2, 3]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 6] and lines[-1]["eval/score"] == pytest.approx(0.3)
    assert (tmp_path / "model.safetensors").exists()


@pytest.fixture
def tiny_dir(tmp_path):
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    return save_model(model, tok, tmp_path / "base")


def test_sft_stop_at_target_accuracy(tiny_dir, tmp_path, monkeypatch):
    calls = []

    def fake_accuracy(model, tokenizer, items, **kw):
        calls.append([it["prompt"] for it in items])
        return {"accuracy": [0.1, 0.2, 0.35, 0.5][len(calls) - 1]}

    monkeypatch.setattr(sft_module, "task_accuracy", fake_accuracy)
    difficulty = {"max_digits": 1, "ops": "+"}
    cfg = {"model": str(tiny_dir), "data": [{"task": "arithmetic", "count": 60, "difficulty": difficulty}],
           "learning_rate": 1e-3, "batch_size": 4, "max_steps": 40, "max_length": 64,
           "stop_at": {"accuracy": 0.3, "every": 5, "count": 20}}
    metrics = run_stage("sft", cfg, tmp_path / "sft")
    assert metrics["steps"] == 15 and metrics["held_out_accuracy"] == pytest.approx(0.35)
    assert metrics["target_reached"] == 1.0
    # Held-out prompts: train-split items of the same difficulty that are not in the SFT data.
    trained = {r["prompt"][0]["content"] for r in sft_module.build_mixture(cfg["data"], seed=0)[0]}
    assert len(calls[0]) == 20 and not set(calls[0]) & trained
    assert all(p.startswith("What is ") and "+" in p for p in calls[0])


def test_sft_stop_at_needs_a_task(tiny_dir, tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "hi", "completion": "yo"}) + "\n")
    cfg = {"model": str(tiny_dir), "data": str(tmp_path / "d.jsonl"), "batch_size": 1, "max_steps": 2,
           "stop_at": {"accuracy": 0.5}}
    with pytest.raises(ConfigError, match="stop_at: name a `task`"):
        run_stage("sft", cfg, tmp_path / "sft")
