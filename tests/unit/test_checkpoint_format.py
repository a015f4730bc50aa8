"""The pickle-free checkpoint format: JSON round trips, damaged and foreign checkpoints (issue 13, item 4)."""

from __future__ import annotations

import json
import logging
import math
import re

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


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # same size, one value changed: only the checksum sees it
    path.write_bytes(bytes(data))


DAMAGES = {
    "optimizer.safetensors missing": (lambda c: (c / "optimizer.safetensors").unlink(), "optimizer.safetensors is missing"),
    "model.safetensors truncated": (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:100]),
                                    "model.safetensors does not match its checksum"),
    "model.safetensors edited": (lambda c: flip_last_byte(c / "model.safetensors"),
                                 "model.safetensors does not match its checksum"),
    "optimizer.json edited": (lambda c: (c / "optimizer.json").write_text("{"), "optimizer.json does not match its checksum"),
    "trainer_state.json missing": (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
}


@pytest.mark.parametrize("damage,expected", DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_only_checkpoint_is_named_and_training_starts_over(tmp_path, caplog, damage, expected):
    out, ckpt = interrupted(tmp_path)
    damage(ckpt)
    with caplog.at_level(logging.WARNING, logger="podium"):
        _, summary = tiny_run(out, save_steps=2, max_steps=4, with_summary=True, log=logging.getLogger("podium"))
    assert re.search(expected, caplog.text), caplog.text
    assert summary["steps"] == 4
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.parametrize("damage,expected", DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_last_checkpoint_falls_back_to_the_earlier_sound_one(tmp_path, caplog, damage, expected):
    """Checkpoints at steps 2 and 4 of 6, a crash in step 5, the newest damaged: the run resumes from step 2 with a
    log line and ends with the uninterrupted run's weights."""
    straight = tiny_run(tmp_path / "straight", max_steps=6)
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, objective=crash_after(5), save_steps=2, max_steps=6, save_total_limit=2)
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"step-2", "step-4"}
    damage(out / "checkpoints" / "step-4")
    with caplog.at_level(logging.INFO, logger="podium"):
        resumed = tiny_run(out, save_steps=2, max_steps=6, log=logging.getLogger("podium"))
    assert re.search(expected, caplog.text), caplog.text
    assert "resuming from" in caplog.text and "step-2 (step 2 of 6)" in caplog.text
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name


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
