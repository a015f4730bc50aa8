"""Measured peak memory per process of podium's training loop against the estimate (podium.training.memory).

Three Llama sizes (vocabulary 4096), SFT, micro-batch 4 x 128 tokens (the second half of each row is the
completion), fp32 on CPU (`PODIUM_MEMORY_DEVICE=cuda`: on GPUs), on 1 process and on 2 processes under
podium's FSDP2 (gloo). The peak is what
torch's MemTracker (torch.distributed._tools.mem_tracker) counts of live tensors during step 2 (step 1
creates the optimizer state), per process; the estimate is `estimate()` for the same setup.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sharded_memory.py            # ~2 minutes on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sharded_memory.py --sizes small

Prints one row per (size, processes): parameters, measured peak, estimated peak, estimate / measured;
JSON lines go to benchmarks/results/sharded_memory.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# cpu: gloo ranks (the measurement in the README); cuda: NCCL ranks on GPUs 0 and 1 (scripts/gpu_check.sh fsdp)
DEVICE = os.environ.get("PODIUM_MEMORY_DEVICE", "cpu")
SIZES = {"small": (128, 344, 4, 4), "medium": (256, 688, 6, 4), "large": (512, 1376, 8, 8)}  # h, I, layers, heads
VOCAB, BATCH, LENGTH = 4096, 4, 128


def build(size: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    h, i, layers, heads = SIZES[size]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=LENGTH,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def worker(size: str, out: str) -> None:
    """One process of the measured run (under `accelerate launch` for 2)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from podium.data.collate import pad_batch
    from podium.distributed.world import current_world
    from podium.training.loop import train_loop
    from podium.training.settings import TrainSettings
    from podium.training.sft import sft_objective

    model = build(size)
    world = current_world()
    g = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(BATCH * 2 * world.size):
        ids = torch.randint(3, VOCAB, (LENGTH,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * (LENGTH // 2) + ids[LENGTH // 2:]})
    tracker = MemTracker()
    tracker.track_external(model)
    peaks = []

    def measure(_model):  # after each optimizer step: the peak since the last one
        peaks.append(tracker.get_tracker_snapshot("peak"))
        tracker.reset_mod_stats()
        return {}

    settings = TrainSettings(learning_rate=1e-4, batch_size=BATCH, max_steps=2, seed=0, max_grad_norm=None)
    with tempfile.TemporaryDirectory() as tmp, tracker:
        summary = train_loop(model, sft_objective, examples, partial(pad_batch, pad_id=0), settings, tmp,
                             show_progress=False, evaluate=measure, evaluate_every=1, save_final=lambda *a, **k: None)
    peak = max(v["Total"] for v in peaks[-1].values())
    rows = [{"rank": world.rank, "peak": peak, **{k: v for k, v in summary.items() if k.startswith("memory/")}}]
    from podium.distributed.world import all_gather_json

    rows = all_gather_json(rows[0], world)
    if world.is_main:
        Path(out).write_text(json.dumps(rows))


def estimated(size: str, processes: int) -> int:
    from podium.training.memory import ModelShape, TrainingSetup, estimate

    h, i, layers, heads = SIZES[size]
    shape = ModelShape(vocab_size=VOCAB, hidden_size=h, intermediate_size=i, num_layers=layers, num_heads=heads,
                       num_kv_heads=heads, head_dim=h // heads)
    setup = TrainingSetup(processes=processes, sharding="fsdp2" if processes > 1 else "replicated", batch_size=BATCH,
                          max_length=LENGTH, attention_probs=DEVICE == "cpu", predicted_fraction=0.5)
    return estimate(shape, setup).peak, shape.parameters


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,medium,large")
    p.add_argument("--worker", nargs=2, metavar=("SIZE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    from podium.distributed.fsdp import ENV, FSDPSettings

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT / "src")}
    results = ROOT / "benchmarks" / "results" / "sharded_memory.jsonl"
    print(f"{'size':8} {'params':>8} {'procs':>5} {'measured MiB':>13} {'estimate MiB':>13} {'ratio':>6}")
    for size in args.sizes.split(","):
        for processes in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "rows.json"
                cmd = [sys.executable, __file__, "--worker", size, str(out)]
                extra = {}
                if processes > 1:
                    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                           str(processes), "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no",
                           "--dynamo_backend", "no", __file__, "--worker", size, str(out)]
                    extra = {**({"ACCELERATE_USE_CPU": "1"} if DEVICE == "cpu" else {}), ENV: FSDPSettings().to_env()}
                subprocess.run(cmd, env={**env, **extra}, check=True, capture_output=True, cwd=ROOT)
                rows = json.loads(out.read_text())
            measured = max(r["peak"] for r in rows)
            est, params = estimated(size, processes)
            print(f"{size:8} {params / 1e6:7.2f}M {processes:5d} {measured / 2**20:13.1f} {est / 2**20:13.1f} "
                  f"{est / measured:6.2f}")
            with open(results, "a") as f:
                f.write(json.dumps({"size": size, "parameters": params, "processes": processes, "measured": measured,
                                    "estimate": est, "ratio": est / measured, "ranks": rows}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
