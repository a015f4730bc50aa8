"""Distributed stages on a GPU machine (skipped without CUDA; run by scripts/gpu_check.sh).

One GPU is enough for these: each runs a code path the CPU tests cannot reach (accelerate runs FSDP
and DeepSpeed on GPUs only, vLLM needs CUDA) with one process, against the same stage in-process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from podium.files import read_jsonl

pytestmark = [pytest.mark.gpu, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TRAIN = """\
name: gpu-{name}
stages:
  - {{name: base, kind: tiny_model, hidden_size: 128, intermediate_size: 256, num_layers: 2, num_heads: 2}}
  - {{name: tasks, kind: tasks, train: 32, test: 2}}
  - {{name: sgd, kind: sgd, model: "@base", task: arithmetic, count: 16, num_samples: 2, max_new_tokens: 8{sgd}}}
  - &train {{name: train, kind: train, model: "@base", data: "@sgd", batch_size: 2, max_steps: 3, max_length: 64,
            learning_rate: 1.0e-3, reference_cache_dir: cache, launch: {launch}}}
  - {{<<: *train, name: train_plain, launch: null}}
"""


def run(tmp_path: Path, name: str, launch: str, sgd: str = "") -> Path:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(TRAIN.format(name=name, launch=launch, sgd=sgd))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "podium", "run", str(recipe), "-o", str(tmp_path / name),
                           "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / name


def max_diff(a: Path, b: Path) -> float:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys()
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


@needs_cuda
def test_ddp_one_gpu(tmp_path):
    out = run(tmp_path, "ddp", f"{{config_file: {CONFIGS / 'multi_gpu_ddp.yaml'}, num_processes: 1, mixed_precision: 'no'}}")
    assert max_diff(out / "train", out / "train_plain") <= 1e-4


@needs_cuda
def test_fsdp_sharded_reference_and_gathered_save(tmp_path):
    out = run(tmp_path, "fsdp", f"{{config_file: {CONFIGS / 'fsdp.yaml'}, num_processes: 1, mixed_precision: 'no'}}")
    log = (out / "train" / "launch.log").read_text()
    assert "reference log-probs computed" in log or "read from cache" in log
    assert max_diff(out / "train", out / "train_plain") <= 1e-4


@needs_cuda
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")
def test_zero3_sharded_reference_and_gathered_save(tmp_path):
    out = run(tmp_path, "zero3",
              f"{{config_file: {CONFIGS / 'deepspeed_zero3.yaml'}, num_processes: 1, mixed_precision: 'no'}}")
    assert max_diff(out / "train", out / "train_plain") <= 1e-4


@needs_cuda
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm")
def test_vllm_sampling_inside_a_launch(tmp_path):
    """sgd with backend vllm, launched (external_launcher engine) and in-process: the same samples."""
    recipe = tmp_path / "v.yaml"
    recipe.write_text("""\
name: gpu-vllm
stages:
  - {name: base, kind: tiny_model, hidden_size: 128, intermediate_size: 256, num_layers: 2, num_heads: 2}
  - &sgd {name: sgd, kind: sgd, model: "@base", task: arithmetic, count: 16, num_samples: 2, max_new_tokens: 8,
          backend: vllm, gpu_memory_utilization: 0.3, launch: {num_processes: 1}}
  - {<<: *sgd, name: sgd_plain, launch: null}
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "podium", "run", str(recipe), "-o", str(tmp_path / "v"),
                           "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a = read_jsonl(tmp_path / "v" / "sgd" / "generate" / "samples.jsonl")
    b = read_jsonl(tmp_path / "v" / "sgd_plain" / "generate" / "samples.jsonl")
    assert [r["responses"] for r in a] == [r["responses"] for r in b]
