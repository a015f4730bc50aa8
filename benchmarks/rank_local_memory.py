"""Host memory per process while podium's FSDP2 loads a model: whole-model loading against rank-local loading.

A random Llama of ~168M parameters (fp32, 673 MB: hidden 1024, 8 layers, vocabulary 32000, untied head) is
saved as a Hub-style sharded folder (model.safetensors.index.json + 200 MB files). Then, for each way of loading,
2 processes (gloo, CPU) run `load_model(..., rank_local=True)` and `shard_model` as a training stage does:

- whole: `launch: {fsdp: {rank_local_load: false}}`: every rank runs `from_pretrained` (the whole model), then
  `fully_shard` keeps its half;
- rank_local (the default): the model is built on the meta device, sharded, and each rank reads only its rows.

Each process samples its /proc/self/status every 2 ms from before the load to after sharding and reports the peak
resident set (VmHWM, the kernel's own peak, minus the resident set before loading), the peak anonymous memory
(RssAnon: tensors) and the peak file-backed part (RssFile: pages of the mmap'd safetensors files the process
touched), the local shard's bytes and the load's wall time. Both ways end with the same shards (the checksum
of each rank's shards is compared).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rank_local_memory.py        # ~1-2 minutes on 2 cores
    PODIUM_MEMORY_DEVICE=cuda .venv/bin/python benchmarks/rank_local_memory.py --no-record   # 2 GPUs (NCCL)

On GPUs (scripts/gpu_check.sh fsdp) the shards end on the GPUs and each row also has the GPU peak
(torch.cuda.max_memory_allocated).

Prints one row per way of loading; a JSON line goes to benchmarks/results/rank_local_memory.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8,
         "num_attention_heads": 16, "num_key_value_heads": 16, "tie_word_embeddings": False}
MiB = 2**20
DEVICE = os.environ.get("PODIUM_MEMORY_DEVICE", "cpu")  # cpu: gloo ranks; cuda: NCCL ranks on GPUs 0 and 1


def status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """The largest RssAnon and RssFile seen, every 2 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.running = True

    def run(self):
        while self.running:
            s = status()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s[k])
            time.sleep(0.002)


def worker(folder: str, out: str) -> None:
    """One process: load and shard as a training stage does, measuring host memory."""
    import torch.distributed as dist
    from accelerate import PartialState

    from podium.models.io import load_model
    from podium.training.fsdp import env_settings, shard_model, state_bytes

    state = PartialState()  # the process group, as the training loop's Accelerator makes it
    before = status()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    model = load_model(folder, rank_local=True)
    model = shard_model(model, env_settings(), state.device)
    seconds = time.perf_counter() - t0
    sampler.running = False
    sampler.join()
    after = status()
    checksum = sum(float(p.to_local().double().pow(2).sum()) for p in model.parameters())
    row = {"rank": state.process_index, "before_rss": before["VmRSS"], "peak_rss": after["VmHWM"],
           "peak_rss_over_before": after["VmHWM"] - before["VmRSS"],
           "peak_anon_over_before": sampler.peak["RssAnon"] - before["RssAnon"],
           "peak_file": sampler.peak["RssFile"] - before["RssFile"], "after_rss": after["VmRSS"],
           "shard_bytes": state_bytes(model)["parameters"], "seconds": seconds, "checksum": checksum,
           "device": str(state.device)}
    if state.device.type == "cuda":
        row["gpu_peak"] = torch.cuda.max_memory_allocated(state.device)
    rows = [None] * state.num_processes
    dist.all_gather_object(rows, row)  # plain dicts of numbers, between this benchmark's own ranks
    if state.is_main_process:
        Path(out).write_text(json.dumps(rows))


def save_model_folder(folder: Path) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    from podium.models.io import save_model

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, max_position_embeddings=256))
    save_model(model, None, folder, max_shard_size="200MB")
    return sum(p.numel() for p in model.parameters())


def launch(folder: Path, out: Path, rank_local: bool) -> list[dict]:
    from podium.training.fsdp import ENV, FSDPSettings

    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"ACCELERATE_USE_CPU": "1"} if DEVICE == "cpu" else {}), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", ENV: FSDPSettings(rank_local_load=rank_local).to_env()}
    accelerate = str(Path(sys.executable).parent / "accelerate")
    subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no", __file__,
                    "--worker", str(folder), str(out)], env=env, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("FOLDER", "OUT"))
    parser.add_argument("--no-record", action="store_true", help="print only, no line in benchmarks/results")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        params = save_model_folder(folder)
        files = sorted(p.name for p in folder.glob("*.safetensors"))
        result = {"date": date.today().isoformat(), "device": DEVICE, "parameters": params, "dtype": "float32", "processes": 2,
                  "files": len(files), "model_bytes": sum((folder / f).stat().st_size for f in files), "shape": SHAPE}
        for name, rank_local in (("whole", False), ("rank_local", True)):
            result[name] = launch(folder, Path(tmp) / f"{name}.json", rank_local)
    assert [r["checksum"] for r in result["whole"]] == [r["checksum"] for r in result["rank_local"]], "shards differ"
    print(f"{params / 1e6:.1f}M parameters, {result['model_bytes'] / MiB:.0f} MiB in {len(files)} files; 2 processes "
          f"({'gloo, CPU' if DEVICE == 'cpu' else 'NCCL, GPUs'})")
    print(f"{'loading':<11} {'rank':>4} {'peak RSS +':>11} {'peak anon +':>12} {'peak file':>10} {'shard':>8} {'seconds':>8}")
    for name in ("whole", "rank_local"):
        for r in result[name]:
            print(f"{name:<11} {r['rank']:>4} {r['peak_rss_over_before'] / MiB:>9.0f} M {r['peak_anon_over_before'] / MiB:>10.0f} M"
                  f" {r['peak_file'] / MiB:>8.0f} M {r['shard_bytes'] / MiB:>6.0f} M {r['seconds']:>8.1f}"
                  + (f"  GPU peak {r['gpu_peak'] / MiB:.0f} M" if "gpu_peak" in r else ""))
    if not args.no_record:
        with open(ROOT / "benchmarks" / "results" / "rank_local_memory.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
