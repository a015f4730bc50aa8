"""Host memory per process while podium's FSDP2 loads a model: whole-model loading against rank-local loading.

A random Llama of 168M parameters (hidden 1024, 8 layers, vocabulary 32000, untied head) is saved as a
Hub-style sharded folder (model.safetensors.index.json + 200 MB files), once in bf16 (as the Hub ships the
full-scale recipes' models, which their stages train in float32) and once in fp32. For each, 2 processes (gloo,
CPU) run `load_model(..., dtype="float32", rank_local=True)` and `shard_model` as a training stage does:

- whole: `launch: {fsdp: {rank_local_load: false}}`: every rank runs `from_pretrained` (the whole model), then
  `fully_shard` keeps its half;
- rank_local (the default): the model is built on the meta device, sharded, and each rank reads only its rows.

Each process samples its /proc/self/status every 2 ms from before the load to after sharding and reports, above
its resident memory before loading: the peak resident set (VmHWM, the kernel's own peak), the peak anonymous
memory (RssAnon: tensors) and the peak file-backed part (RssFile: pages of memory-mapped weight files), with its
local shard's bytes and the load's wall time. Both ways end with the same shards (each parameter's sum of
squares is compared, rank by rank).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rank_local_memory.py        # ~2-3 minutes on 2 cores
    PODIUM_MEMORY_DEVICE=cuda .venv/bin/python benchmarks/rank_local_memory.py --no-record   # 2 GPUs (NCCL)

On GPUs (scripts/gpu_check.sh fsdp) the shards end on the GPUs and each row also has the GPU peak
(torch.cuda.max_memory_allocated). Prints one row per (files, loading, rank); JSON lines go to
benchmarks/results/rank_local_memory.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def worker(folder: str, dtype: str, out: str) -> None:
    """One process: load and shard as a training stage does, measuring host memory."""
    import torch.distributed as dist

    from podium.distributed.fsdp import env_settings, shard_model, state_bytes
    from podium.models.io import load_model

    if DEVICE == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if DEVICE == "cuda" else "gloo")
    rank = dist.get_rank()
    before = status()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    model = load_model(folder, dtype=dtype, rank_local=True)
    model = shard_model(model, env_settings(), device)
    seconds = time.perf_counter() - t0
    sampler.running = False
    sampler.join()
    after = status()
    checksum = {name: float(p.detach().to_local().double().pow(2).sum()) for name, p in model.named_parameters()}
    row = {"rank": rank, "before_rss": before["VmRSS"], "peak_rss": after["VmHWM"],
           "peak_rss_over_before": after["VmHWM"] - before["VmRSS"],
           "peak_anon_over_before": sampler.peak["RssAnon"] - before["RssAnon"],
           "peak_file": sampler.peak["RssFile"] - before["RssFile"], "after_rss": after["VmRSS"],
           "shard_bytes": state_bytes(model)["parameters"], "seconds": seconds, "checksum": checksum,
           "device": str(device)}
    if device.type == "cuda":
        row["gpu_peak"] = torch.cuda.max_memory_allocated(device)
    Path(f"{out}.rank{rank}").write_text(json.dumps(row))
    dist.destroy_process_group()


def save_model_folder(folder: Path, dtype: torch.dtype) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    from podium.models.io import save_model

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, max_position_embeddings=256)).to(dtype)
    save_model(model, None, folder, max_shard_size="200MB")
    return sum(p.numel() for p in model.parameters())


def launch(folder: Path, dtype: str, out: Path, rank_local: bool) -> list[dict]:
    from podium.distributed.fsdp import ENV, FSDPSettings

    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"ACCELERATE_USE_CPU": "1"} if DEVICE == "cpu" else {}), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", ENV: FSDPSettings(rank_local_load=rank_local).to_env()}
    accelerate = str(Path(sys.executable).parent / "accelerate")
    subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no", __file__,
                    "--worker", str(folder), dtype, str(out)], env=env, check=True, cwd=ROOT)
    return [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=3, metavar=("FOLDER", "DTYPE", "OUT"))
    parser.add_argument("--no-record", action="store_true", help="print only, no line in benchmarks/results")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # (files, stage dtype): the full-scale recipes' case (Hub weights in bf16, a stage in float32: every byte is
        # converted, so a whole load holds the whole model in anonymous memory), and fp32 files loaded as they are.
        for files_dtype, stage_dtype in (("bfloat16", "float32"), ("float32", "float32")):
            folder = Path(tmp) / files_dtype
            params = save_model_folder(folder, getattr(torch, files_dtype))
            files = sorted(p.name for p in folder.glob("*.safetensors"))
            result = {"date": date.today().isoformat(), "device": DEVICE, "parameters": params, "files_dtype": files_dtype,
                      "stage_dtype": stage_dtype, "processes": 2, "files": len(files),
                      "model_bytes": sum((folder / f).stat().st_size for f in files), "shape": SHAPE}
            for name, rank_local in (("whole", False), ("rank_local", True)):
                result[name] = launch(folder, stage_dtype, Path(tmp) / f"{files_dtype}-{name}.json", rank_local)
            for a, b in zip(result["whole"], result["rank_local"]):
                differ = [k for k in a["checksum"] if a["checksum"][k] != b["checksum"].get(k)]
                assert not differ, f"rank {a['rank']}: shards differ: {differ[:5]}"
                a.pop("checksum"), b.pop("checksum")
            rows.append(result)
            shutil.rmtree(folder)
    print(f"{params / 1e6:.1f}M parameters; 2 processes ({'gloo, CPU' if DEVICE == 'cpu' else 'NCCL, GPUs'}); per process, "
          "above its resident memory before loading (MiB)")
    print(f"{'files -> stage':<17} {'loading':<11} {'rank':>4} {'peak RSS':>9} {'peak anon':>10} {'peak file':>10} "
          f"{'shard':>6} {'seconds':>8}")
    for result in rows:
        for name in ("whole", "rank_local"):
            for r in result[name]:
                print(f"{result['files_dtype'] + ' -> ' + result['stage_dtype']:<17} {name:<11} {r['rank']:>4} "
                      f"{r['peak_rss_over_before'] / MiB:>9.0f} {r['peak_anon_over_before'] / MiB:>10.0f} "
                      f"{r['peak_file'] / MiB:>10.0f} {r['shard_bytes'] / MiB:>6.0f} {r['seconds']:>8.1f}"
                      + (f"  GPU peak {r['gpu_peak'] / MiB:.0f}" if "gpu_peak" in r else ""))
    if not args.no_record:
        with open(ROOT / "benchmarks" / "results" / "rank_local_memory.jsonl", "a") as f:
            for result in rows:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
