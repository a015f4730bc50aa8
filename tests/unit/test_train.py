"""The train stage and `podium train`: config keys, metrics.jsonl, counted drops, non-finite stop."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError
from tests.pref_helpers import PAIRS, save_tiny, write_pairs

from podium.cli.train import main
from podium.errors import PodiumError
from podium.training.train import TrainConfig

METRIC_KEYS = {"step", "loss", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected",
               "rewards/margins", "rewards/accuracies", "grad_norm", "lr", "pairs_per_second", "tokens_per_second"}


def test_config_lambda_alias_and_unknown_keys():
    cfg = TrainConfig.model_validate({"model": "m", "data": "d", "objective": "dpop", "lambda": 5})
    assert cfg.lambda_ == 5.0
    with pytest.raises(Exception, match="learnig_rate"):
        TrainConfig.model_validate({"model": "m", "data": "d", "learnig_rate": 1})
    with pytest.raises(ValidationError, match="unknown objective 'dpx'"):
        TrainConfig.model_validate({"model": "m", "data": "d", "objective": "dpx"})


@pytest.fixture
def tiny_run(tmp_path):
    save_tiny(tmp_path / "model")
    rows = PAIRS + [{"prompt": "p", "chosen": "same", "rejected": "same"}]
    write_pairs(tmp_path / "pairs.jsonl", rows)
    return {"model": str(tmp_path / "model"), "data": str(tmp_path / "pairs.jsonl"), "batch_size": 2,
            "max_steps": 2, "learning_rate": 1e-3, "max_length": 64, "reference_cache_dir": str(tmp_path / "cache")}


def test_train_stage_writes_metrics_and_model(tiny_run, tmp_path):
    from podium.stages import run_stage

    metrics = run_stage("train", tiny_run, tmp_path / "out")
    assert metrics["pairs/dropped/chosen_equals_rejected"] == 1.0 and metrics["pairs/kept"] == len(PAIRS)
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert METRIC_KEYS <= set(rows[0])
    assert (tmp_path / "out" / "model.safetensors").exists()
    again = run_stage("train", tiny_run, tmp_path / "out2")
    assert again["reference/cache_hit"] == 1.0 and metrics["reference/cache_hit"] == 0.0


def test_non_finite_loss_stops_naming_the_step(tiny_run, tmp_path, monkeypatch):
    import podium.losses as pl
    from podium.losses import LossOutput
    from podium.stages import run_stage

    calls = []

    def nan_at_second_step(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                           reference_rejected_logps, **_):
        calls.append(1)
        z = policy_chosen_logps - policy_rejected_logps
        losses = z * (float("nan") if len(calls) >= 2 else 1.0)
        return LossOutput(losses, z.detach(), z.detach())

    monkeypatch.setitem(pl.LOSSES, "dpo", nan_at_second_step)
    with pytest.raises((PodiumError, RuntimeError), match="step 2"):
        run_stage("train", {**tiny_run, "max_steps": 3}, tmp_path / "nan")


def test_lora_run_uses_adapter_disabled_reference(tiny_run, tmp_path):
    """At step 1 the LoRA policy equals the base model (B = 0), so the rewards are exactly zero."""
    from podium.stages import run_stage

    cfg = {**tiny_run, "max_steps": 1, "lora": {"r": 2, "alpha": 4, "dropout": 0.0,
                                                 "target_modules": ["q_proj", "v_proj"]}}
    run_stage("train", cfg, tmp_path / "lora")
    (row,) = [json.loads(line) for line in (tmp_path / "lora" / "metrics.jsonl").read_text().splitlines()]
    assert row["rewards/chosen"] == 0.0 and row["rewards/margins"] == 0.0
    assert row["loss"] == pytest.approx(0.6931472, abs=1e-6)


def test_cli_overrides_and_errors(tiny_run, tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({**tiny_run, "objective": "dpop", "output_dir": str(tmp_path / "cli")}))
    assert main([str(cfg), "lambda=5", "max_steps=1"]) == 0
    assert len((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()) == 1
    assert main([str(cfg), "lamda=5"]) == 2
    assert "unknown key 'lamda'" in capsys.readouterr().err


def test_reward_model_objective_through_the_same_stage(tiny_run, tmp_path):
    """objective: reward trains a Bradley-Terry head (podium.judging) and saves a loadable preference model."""
    from podium.models.heads import load_preference_model
    from podium.stages import run_stage

    run_stage("train", {**tiny_run, "objective": "reward", "learning_rate": 1e-3}, tmp_path / "rm")
    rows = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "accuracy" in rows[0]
    model, _ = load_preference_model(tmp_path / "rm")
    assert model.kind == "reward"


def test_separate_reference_model(tiny_run, tmp_path):
    """Step-1 rewards are beta * (log pi - log pi_ref): zero against the frozen copy, non-zero against another model."""
    from podium.stages import run_stage

    save_tiny(tmp_path / "other", seed=7)
    run_stage("train", {**tiny_run, "max_steps": 1}, tmp_path / "self")
    run_stage("train", {**tiny_run, "max_steps": 1, "reference": str(tmp_path / "other")}, tmp_path / "other_ref")
    first = [json.loads((tmp_path / d / "metrics.jsonl").read_text().splitlines()[0]) for d in ("self", "other_ref")]
    assert first[0]["rewards/chosen"] == 0.0
    assert first[1]["rewards/chosen"] != 0.0 and first[1]["logps/chosen"] == first[0]["logps/chosen"]
