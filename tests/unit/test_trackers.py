"""`report_to`: accelerate's experiment trackers next to metrics.jsonl (TensorBoard read back for real)."""

from __future__ import annotations

import json
import os

import pytest
from tests.loop_helpers import tiny_run

from podium.errors import PodiumError
from podium.training.settings import TrainSettings


def test_tensorboard_holds_the_logged_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "sft"
    tiny_run(out, report_to="tensorboard", max_steps=3)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tracking" / "sft"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("loss")}
    assert sorted(logged) == [1, 2, 3] == [r["step"] for r in rows]
    for r in rows:  # TensorBoard stores float32
        assert logged[r["step"]] == pytest.approx(r["loss"], rel=1e-6)
    assert {"lr", "grad_norm"} <= set(events.Tags()["scalars"])


def test_report_to_forms():
    assert TrainSettings(report_to="tensorboard").report_to == ["tensorboard"]
    assert TrainSettings(report_to="none").report_to == []
    assert TrainSettings(report_to=["tensorboard", "mlflow"]).report_to == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError):
        TrainSettings(report_to=["comet"])


def test_missing_tracker_package_is_named(tmp_path, monkeypatch):
    real = __import__("importlib").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(PodiumError, match=r"wandb not installed \(pip install wandb\)"):
        tiny_run(tmp_path / "sft", report_to=["wandb"])


def test_wandb_runs_offline_without_an_api_key(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "")  # unset for podium's check; restored after the test
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "dpo"
    tiny_run(out, report_to=["wandb"], max_steps=2)
    assert os.environ["WANDB_MODE"] == "offline"
    runs = list((out / "tracking" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), runs
