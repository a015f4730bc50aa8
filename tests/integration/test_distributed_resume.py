"""kill -9 of a 2-process (gloo) `podium train`, then the same command: it resumes from the pickle-free
checkpoint and ends with the weights of an uninterrupted 2-process run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from safetensors.torch import load_file
from tests.pref_helpers import PAIRS, save_tiny, write_pairs

pytestmark = pytest.mark.integration
LAUNCH = Path(__file__).with_name("pref_launch.py")
ROOT = Path(__file__).resolve().parents[2]


def command(tmp_path: Path, out: str) -> list[str]:
    if not (tmp_path / "model").exists():
        save_tiny(tmp_path / "model")
        write_pairs(tmp_path / "pairs.jsonl", PAIRS * 4)
    cfg = {"objective": "dpo", "model": str(tmp_path / "model"), "data": str(tmp_path / "pairs.jsonl"),
           "output_dir": str(tmp_path / out), "learning_rate": 1e-3, "batch_size": 1, "max_steps": 12,
           "save_steps": 2, "seed": 3, "max_length": 64, "reference_cache_dir": str(tmp_path / "cache")}
    (tmp_path / f"{out}.yaml").write_text(yaml.safe_dump(cfg))
    accelerate = str(Path(sys.executable).parent / "accelerate")
    return [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", str(LAUNCH), str(tmp_path / f"{out}.yaml")]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"),
            "ACCELERATE_USE_CPU": "1"}


def test_two_process_kill9_resume_matches_uninterrupted(tmp_path):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("accelerate launcher not installed")
    subprocess.run(command(tmp_path, "straight"), check=True, env=env(), cwd=ROOT)

    proc = subprocess.Popen(command(tmp_path, "killed"), env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any((p / "trainer_state.json").exists() for p in ckpts.glob("step-*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before the first checkpoint; make it longer"
    (ckpt,) = [p for p in ckpts.glob("step-*") if (p / "trainer_state.json").exists()][:1]
    assert {"rng-0.json", "rng-1.json", "model.safetensors", "optimizer.safetensors"} <= {p.name for p in ckpt.iterdir()}
    # The launcher and both ranks (torchrun starts the workers in sessions of their own).
    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(procs) >= 3, procs
    for p in procs:
        p.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive
    assert not (tmp_path / "killed" / "model.safetensors").exists()

    again = subprocess.run(command(tmp_path, "killed"), check=True, env=env(), cwd=ROOT, capture_output=True, text=True)
    assert "resuming from" in again.stdout + again.stderr
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-6, k
