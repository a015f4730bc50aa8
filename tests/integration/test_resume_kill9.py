"""kill -9 in the middle of SFT, then the same command: it resumes and ends with the
weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).parents[2]
RECIPE = """\
name: resume
stages:
  - {name: base, kind: tiny_model, hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 2}
  - name: sft
    kind: sft
    model: "@base"
    data: [{task: arithmetic, count: 400}]
    batch_size: 8
    max_steps: 40
    save_steps: 5
    learning_rate: 3.0e-3
"""


def podium(recipe, out):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "podium", "run", str(recipe), "--output", str(out), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.integration
def test_kill9_then_resume_matches_uninterrupted(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    full = podium(recipe, tmp_path / "full")
    assert full.wait() == 0, full.stderr.read()

    cut = podium(recipe, tmp_path / "cut")
    ckpts = tmp_path / "cut" / "sft" / "checkpoints"
    deadline = time.time() + 300
    while not any(p.name.startswith("step-1") for p in ckpts.glob("step-*")):  # step-10 or later
        assert cut.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(cut.pid, signal.SIGKILL)
    cut.wait()
    assert not (tmp_path / "cut" / "sft" / ".podium-done").exists()

    resumed = podium(recipe, tmp_path / "cut")
    assert resumed.wait() == 0, resumed.stderr.read()
    a = load_file(tmp_path / "full" / "sft" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "sft" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    steps = [line for line in (tmp_path / "cut" / "sft" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(steps) == 40
