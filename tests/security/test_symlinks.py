"""Symbolic links in and around a run dir: podium reads through them where the user pointed, but never
writes, deletes or resumes through a link, so nothing outside the run dir is touched (issue 13)."""

from __future__ import annotations

import shutil

import pytest
import torch
from tests.loop_helpers import crash_after, tiny_run
from tests.security.planting import plant_pickles, snapshot

from podium.errors import PodiumError
from podium.stages import run_stage


@pytest.fixture
def outside(tmp_path):
    """A folder outside the run dir standing for a sensitive place (~/.ssh, a shared model store)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("user data")
    return folder


def test_model_and_data_paths_that_are_links_are_only_read(tiny_dir, tmp_path, outside):
    shutil.copytree(tiny_dir, outside / "model")
    (outside / "d.jsonl").write_text('{"prompt": "1+1=", "completion": "2"}\n' * 4)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(outside / "model")
    (run / "d.jsonl").symlink_to(outside / "d.jsonl")
    before = snapshot(outside)
    run_stage("sft", {"model": str(run / "model"), "data": str(run / "d.jsonl"), "batch_size": 2, "max_steps": 2,
                      "save_steps": 1}, run / "sft")
    assert (run / "sft" / "model.safetensors").exists()
    assert snapshot(outside) == before


def test_checkpoints_folder_that_is_a_link_is_refused(tmp_path, outside):
    out = tmp_path / "sft"
    out.mkdir()
    (out / "checkpoints").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(PodiumError, match="checkpoints is a symbolic link"):
        tiny_run(out, save_steps=1)
    assert snapshot(outside) == before


def test_metrics_file_that_is_a_link_is_refused(tmp_path, outside):
    out = tmp_path / "sft"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to(outside / "precious.txt")
    before = snapshot(outside)
    with pytest.raises(PodiumError, match="metrics.jsonl is a symbolic link"):
        tiny_run(out)
    assert snapshot(outside) == before


def test_checkpoint_link_is_neither_resumed_nor_deleted(tmp_path, outside):
    """A `step-N` link to a folder elsewhere, holding poisoned weights and pickles: not read, not removed."""
    donor = tmp_path / "donor"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(donor, objective=crash_after(3), save_steps=2, max_steps=4)
    planted = outside / "step-99"
    shutil.copytree(donor / "checkpoints" / "step-2", planted)
    marker = tmp_path / "PWNED"
    plant_pickles(planted, marker)
    from safetensors.torch import load_file, save_file

    w = load_file(str(planted / "model.safetensors"))
    save_file({k: torch.full_like(v, 7.0) for k, v in w.items()}, str(planted / "model.safetensors"))

    out = tmp_path / "sft"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "step-99").symlink_to(planted)
    before = snapshot(outside)
    model = tiny_run(out, save_steps=2, max_steps=4, save_total_limit=1)
    straight = tiny_run(tmp_path / "straight", save_steps=2, max_steps=4)
    for (name, a), (_, b) in zip(model.named_parameters(), straight.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # trained from scratch, not from step-99
    assert snapshot(outside) == before and not marker.exists()
