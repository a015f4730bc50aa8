"""kill -9 in the middle of `podium train`, rerun the same command: it resumes and ends with the same
weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from tests.pref_helpers import PAIRS, save_tiny, write_pairs

pytestmark = pytest.mark.integration
LAUNCH = Path(__file__).with_name("pref_launch.py")
ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, out: str) -> Path:
    model = tmp_path / "model"
    if not model.exists():
        save_tiny(model)
        write_pairs(tmp_path / "pairs.jsonl", PAIRS * 4)
    cfg = {"objective": "dpo", "model": str(model), "data": str(tmp_path / "pairs.jsonl"),
           "output_dir": str(tmp_path / out), "learning_rate": 1e-3, "batch_size": 2, "max_steps": 12,
           "save_steps": 2, "seed": 3, "max_length": 64, "reference_cache_dir": str(tmp_path / "cache")}
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}


def weights(out: Path) -> dict:
    return load_file(str(out / "model.safetensors"))


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    straight = config(tmp_path, "straight")
    subprocess.run([sys.executable, str(LAUNCH), str(straight)], check=True, env=env(), cwd=ROOT)

    killed = config(tmp_path, "killed")
    proc = subprocess.Popen([sys.executable, str(LAUNCH), str(killed)], env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any((p / "trainer_state.json").exists() for p in ckpts.glob("step-*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before the first checkpoint; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()

    again = subprocess.run([sys.executable, str(LAUNCH), str(killed)], check=True, env=env(), cwd=ROOT,
                           capture_output=True, text=True)
    assert "resuming from" in again.stdout + again.stderr
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-6, k
