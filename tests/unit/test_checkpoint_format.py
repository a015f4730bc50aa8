"""The pickle-free checkpoint format: JSON round trips, damaged and foreign checkpoints (issue 13, item 4)."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from tests.loop_helpers import crash_after, tiny_run

from podium.errors import PodiumError
from podium.training.checkpoint import from_json, read_json_file, to_json, write_json_file


def test_json_round_trip_keeps_tuples_and_special_floats(tmp_path):
    value = {"betas": (0.9, 0.999), "eps": 1e-8, "x": None, "inf": math.inf, "nested": [{"t": (1, (2, 3))}]}
    write_json_file(tmp_path / "s.json", value)
    assert read_json_file(tmp_path / "s.json") == value
    assert from_json(json.loads(json.dumps(to_json(value)))) == value
    with pytest.raises(TypeError):
        to_json({"t": torch.zeros(1)})


def test_grad_scaler_state_round_trips(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    write_json_file(tmp_path / "s.json", scaler.state_dict())
    other = torch.amp.GradScaler("cpu")
    other.load_state_dict(read_json_file(tmp_path / "s.json"))
    assert other.state_dict() == scaler.state_dict()


def interrupted(tmp_path):
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, objective=crash_after(3), save_steps=2, max_steps=4)
    return out, out / "checkpoints" / "step-2"


@pytest.mark.parametrize("damage,expected", [
    (lambda c: (c / "optimizer.safetensors").unlink(), "checkpoint is incomplete \\(no optimizer.safetensors\\)"),
    (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:100]),
     "model.safetensors: checkpoint weights do not load"),
    (lambda c: (c / "optimizer.json").write_text("{"), "optimizer.json: checkpoint file is unreadable"),
])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage, expected):
    out, ckpt = interrupted(tmp_path)
    damage(ckpt)
    with pytest.raises(PodiumError, match=expected):
        tiny_run(out, save_steps=2, max_steps=4)


def test_accelerate_checkpoint_from_an_older_podium_is_not_read(tmp_path, caplog):
    out, ckpt = interrupted(tmp_path)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 2}))  # what podium wrote with accelerate
    with caplog.at_level(logging.WARNING, logger="podium"):
        _, summary = tiny_run(out, save_steps=2, max_steps=4, with_summary=True, log=logging.getLogger("podium"))
    assert "not a podium 1 checkpoint" in caplog.text and summary["steps"] == 4
    lines = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == [1, 2, 3, 4]  # started over


def test_changed_global_batch_is_refused(tmp_path):
    out, _ = interrupted(tmp_path)
    with pytest.raises(PodiumError, match="global batch of 4 examples, this run has 2"):
        tiny_run(out, save_steps=2, max_steps=4, batch_size=2)
