"""podium `train` vs TRL 1.16 DPOTrainer: pairs/s, peak memory and loss curves, side by side.

    PYTHONPATH=src python benchmarks/dpo_vs_trl.py [--pairs 64] [--steps 8] [--device cpu|cuda]

Same tiny Llama (a few M parameters, so compute dominates), same data, same machine, one run.
TRL runs at its best settings: no gradient checkpointing, precomputed reference log-probs, fp32 on
CPU (bf16 on CUDA, both sides). Two data sets: prompt-heavy (prompt >= 4x completion) and
balanced. Each trainer runs in its own subprocess; memory is the peak RSS growth over the
process's state after imports (CPU) or `torch.cuda.max_memory_allocated` (CUDA). Time and memory
cover the whole job, from the data file to the saved model: load, tokenise, reference pass
(podium's cache starts cold), training steps, save.

`--device cuda` has not been run yet (no GPU was lent when this was written); note that it
compares TRL's bf16 autocast (fp32 master weights) with podium's bf16 weights.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"hidden_size": 256, "intermediate_size": 768, "num_layers": 4, "num_heads": 4}


def make_pairs(n: int, prompt_len: int, completion_len: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz "

    def text(k):
        return "".join(rng.choice(letters) for _ in range(k))

    return [{"prompt": text(prompt_len), "chosen": text(completion_len), "rejected": text(completion_len)}
            for _ in range(n)]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from podium.models.io import load_model, load_tokenizer

    cuda = args.device == "cuda"
    base = rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tok = load_tokenizer(args.model)
    model = load_model(args.model, device="cuda" if cuda else None)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    config = DPOConfig(
        output_dir=tempfile.mkdtemp(), loss_type=["sigmoid"], beta=0.1, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, max_steps=args.steps, lr_scheduler_type="constant",
        optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="no",
        report_to=[], use_cpu=not cuda, bf16=cuda, max_length=1024, precompute_ref_log_probs=True,
        gradient_checkpointing=False, seed=0, disable_tqdm=True, dataloader_num_workers=0,
        train_sampling_strategy="sequential",  # same batches as podium (shuffle: false), so the curves compare
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    trainer.save_model(config.output_dir)
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb() - base
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"wall_s": wall, "pairs": args.steps * args.batch_size, "peak_mb": mem, "losses": losses}


def run_podium(args) -> dict:
    import torch

    from podium.stages import run_stage

    cuda = args.device == "cuda"
    out = Path(tempfile.mkdtemp())
    cfg = {"objective": "dpo", "model": args.model, "data": args.data, "beta": 0.1, "learning_rate": args.lr,
           "batch_size": args.batch_size, "max_steps": args.steps, "lr_scheduler": "constant",
           "optimizer": "adamw", "max_grad_norm": 1.0, "seed": 0, "max_length": 1024, "shuffle": False,
           "prefix_sharing": True, "padding_free": args.padding_free,
           "dtype": "bfloat16" if cuda else "float32", "reference_cache_dir": str(out / "cache")}
    # Import everything first so the RSS baseline holds the same imports as TRL's.
    import trl  # noqa: F401

    from podium.stages import load_all_stages

    load_all_stages()  # run_stage imports every stage module; do it before the clock starts

    base = rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run_stage("train", cfg, out / "run")
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb() - base
    losses = [json.loads(line)["loss"] for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"wall_s": wall, "pairs": args.steps * args.batch_size, "peak_mb": mem, "losses": losses}


def child(which: str, args, data: Path) -> dict:
    cmd = [sys.executable, __file__, "--run", which, "--model", args.model, "--data", str(data),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--device", args.device] + (["--padding-free"] if args.padding_free else [])
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{which} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", choices=["trl", "podium"])
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--padding-free", action="store_true")
    args = p.parse_args()
    if args.run:
        print(json.dumps((run_trl if args.run == "trl" else run_podium)(args)))
        return

    sys.path.insert(0, str(ROOT / "src"))
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="dpo_vs_trl-"))
    model, tok = build_tiny_model(seed=0, **MODEL)
    n_params = sum(p.numel() for p in model.parameters())
    args.model = str(save_model(model, tok, work / "model"))
    sets = {"prompt-heavy": (240, 40), "balanced": (80, 80)}
    print(f"model: {n_params / 1e6:.2f}M params; {args.pairs} pairs, {args.steps} steps x {args.batch_size} pairs; "
          f"device {args.device}")
    for name, (plen, clen) in sets.items():
        data = work / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(args.pairs, plen, clen, seed=1)))
        trl = child("trl", args, data)
        pod = child("podium", args, data)
        speed = (pod["pairs"] / pod["wall_s"]) / (trl["pairs"] / trl["wall_s"])
        mem = pod["peak_mb"] / trl["peak_mb"] if trl["peak_mb"] > 0 else float("nan")
        print(f"\n[{name}] prompt {plen} chars, completions {clen} chars")
        print(f"  TRL    : {trl['pairs'] / trl['wall_s']:.2f} pairs/s, peak +{trl['peak_mb']:.0f} MB, "
              f"final loss {trl['losses'][-1]:.4f}")
        print(f"  podium : {pod['pairs'] / pod['wall_s']:.2f} pairs/s, peak +{pod['peak_mb']:.0f} MB, "
              f"final loss {pod['losses'][-1]:.4f}")
        print(f"  ratio podium/TRL: pairs/s x{speed:.2f}, peak memory x{mem:.2f}")
        print("  loss curves: TRL " + " ".join(f"{x:.3f}" for x in trl["losses"]))
        print("               podium " + " ".join(f"{x:.3f}" for x in pod["losses"]))


if __name__ == "__main__":
    main()
