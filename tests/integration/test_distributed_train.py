"""`accelerate launch --multi_gpu --num_processes 2` on CPU (gloo) of `podium train` equals one process with
gradient_accumulation_steps=2 (same global batch, loss normalised by the global pair count)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from tests.pref_helpers import PAIRS, save_tiny, write_pairs

pytestmark = pytest.mark.integration
LAUNCH = Path(__file__).with_name("pref_launch.py")
ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_match_accumulation(tmp_path):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("accelerate launcher not installed")
    save_tiny(tmp_path / "model")
    write_pairs(tmp_path / "pairs.jsonl", PAIRS * 4)
    base = {"objective": "dpo", "model": str(tmp_path / "model"), "data": str(tmp_path / "pairs.jsonl"),
            "learning_rate": 1e-3, "batch_size": 2, "max_steps": 4, "seed": 0, "shuffle": False,
            "max_length": 64, "reference_cache_dir": str(tmp_path / "cache")}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}

    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({**base, "gradient_accumulation_steps": 2, "output_dir": str(tmp_path / "one")}))
    subprocess.run([sys.executable, str(LAUNCH), str(one)], check=True, env=env, cwd=ROOT)

    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({**base, "gradient_accumulation_steps": 1, "output_dir": str(tmp_path / "two")}))
    accelerate = str(Path(sys.executable).parent / "accelerate")
    # `accelerate launch --cpu` always starts ONE process (simple launcher, accelerate 1.15); --multi_gpu goes
    # through torchrun, and ACCELERATE_USE_CPU makes the processes pick gloo on CPU.
    env["ACCELERATE_USE_CPU"] = "1"
    subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", str(LAUNCH), str(two)],
                   check=True, env=env, cwd=ROOT)

    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-5, k
