"""podium `train` vs TRL 1.16 DPOTrainer: pairs/s, peak memory and loss curves, side by side.

    PYTHONPATH=src python benchmarks/dpo_vs_trl.py [--pairs 64] [--steps 8] [--repeats 3] [--threads 1]
        [--preset qwen2.5-0.5b | --model-dir DIR] [--device cuda] [--attn auto]

Same tiny Llama (3.5M parameters, the character tokenizer), same data, same machine, one parent
process. TRL runs at its best settings: no gradient checkpointing, precomputed reference log-probs,
fp32 on CPU (bf16 on CUDA, both sides). Two data sets: prompt-heavy (prompt 240 characters,
completions 40) and balanced (80 / 80). Time and memory cover the whole job, from the data file to
the saved model: load, tokenise, reference pass (podium's cache starts cold), training steps, save.
Each run is a child process (benchmarks/side_by_side.py: equal threads, A B / B A interleaving, the
median of the per-pair ratios, load recorded); the phases (reference pass, training loop) are timed
inside the children. One JSON line per data set goes to benchmarks/results/dpo_vs_trl.jsonl.

`--device cuda` is for a GPU machine (scripts/gpu_check.sh runs it); it compares TRL's bf16 autocast
(fp32 master weights) with podium's bf16 weights. `--preset NAME` trains a random-init model of a real
architecture instead (`qwen2.5-0.5b`, `llama-1b`, `llama-tiny-32k`: benchmarks/side_by_side.py PRESETS;
the character tokenizer padded to the model's vocabulary). Both sides use flash_attention_2 on CUDA
when flash-attn is installed, else sdpa (`--attn` sets it; under flash attention podium cannot share
the prompt and uses TRL's layout, one row per sequence). Absolute numbers of the training loop print too: tokens/s (the
tokens of the pairs' chosen and rejected sequences, prompt counted in each, as TRL forwards them) and
MFU (each side's model FLOPs, podium.training.flops, over its loop time and the measured peak).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.side_by_side import (  # noqa: E402
    FlopCounter,
    add_model_arguments,
    append_result,
    attention_for,
    benchmark_model,
    cpu_seconds,
    interleave,
    machine,
    peak_for,
    peak_rss_mb,
    pin_threads,
    podium_step_totals,
    print_absolute,
    print_curves,
    training_ratios,
)

MODEL = {"hidden_size": 256, "intermediate_size": 768, "num_layers": 4, "num_heads": 4}
SETS = {"prompt-heavy": (240, 40), "balanced": (80, 80)}


def make_pairs(n: int, prompt_len: int, completion_len: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz "

    def text(k):
        return "".join(rng.choice(letters) for _ in range(k))

    return [{"prompt": text(prompt_len), "chosen": text(completion_len), "rejected": text(completion_len)}
            for _ in range(n)]


class Clock:
    """Wraps functions to add their wall time to a named phase."""

    def __init__(self):
        self.phases: dict[str, float] = {}

    def wrap(self, phase: str, fn):
        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - t

        return timed


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from podium.models.io import load_model, load_tokenizer

    pin_threads(args.threads)
    cuda = args.device == "cuda"
    clock = Clock()
    DPOTrainer._precompute_ref_logps = clock.wrap("reference_s", DPOTrainer._precompute_ref_logps)
    clock.phases["reference_s"] = 0.0
    base = peak_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), cpu_seconds()
    tok = load_tokenizer(args.model)
    model = load_model(args.model, device="cuda" if cuda else None, attn_implementation=args.attn)
    counter = FlopCounter(model)
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
    t1, ref0 = time.perf_counter(), clock.phases["reference_s"]
    trainer.train()
    t2 = time.perf_counter()
    loop_s = t2 - t1 - (clock.phases["reference_s"] - ref0)  # a reference pass inside train() is not the loop
    trainer.save_model(config.output_dir)
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb() - base
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"wall_s": wall, "cpu_s": cpu_seconds() - c0, "train_s": t2 - t1, **clock.phases, "pairs": args.steps * args.batch_size,
            "peak_mb": mem, "losses": losses, "loop_s": loop_s, "loop_tokens": counter.tokens,
            "loop_mfu": counter.flops / loop_s / peak_for(args.device)}


def run_podium(args) -> dict:
    import torch

    pin_threads(args.threads)
    import trl  # noqa: F401  (the same imports as TRL's child, so the RSS baselines match)

    import podium.training.train as train_stage
    from podium.stages import load_all_stages, run_stage

    load_all_stages()  # run_stage imports every stage module; do it before the clock starts
    clock = Clock()
    train_stage.cached_reference_logps = clock.wrap("reference_s", train_stage.cached_reference_logps)
    train_stage.train_loop = clock.wrap("train_s", train_stage.train_loop)
    cuda = args.device == "cuda"
    out = Path(tempfile.mkdtemp())
    cfg = {"objective": "dpo", "model": args.model, "data": args.data, "beta": 0.1, "learning_rate": args.lr,
           "batch_size": args.batch_size, "max_steps": args.steps, "lr_scheduler": "constant",
           "optimizer": "adamw", "max_grad_norm": 1.0, "seed": 0, "max_length": 1024, "shuffle": False,
           "prefix_sharing": True, "padding_free": args.padding_free,
           "dtype": "bfloat16" if cuda else "float32", "reference_cache_dir": str(out / "cache"),
           "attn_implementation": args.attn}
    base = peak_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), cpu_seconds()
    run_stage("train", cfg, out / "run")
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb() - base
    steps = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    # train_s includes saving the final model (train_loop does it); TRL's excludes it: tens of ms here.
    loop_s, loop_flops = podium_step_totals(steps, args.batch_size)
    return {"wall_s": wall, "cpu_s": cpu_seconds() - c0, **clock.phases, "pairs": args.steps * args.batch_size, "peak_mb": mem,
            "losses": [s["loss"] for s in steps], "mfu": steps[-1].get("mfu"),
            "flops_per_second": steps[-1].get("flops_per_second"), "loop_s": loop_s,
            "loop_mfu": loop_flops / loop_s / peak_for(args.device) if loop_flops else None}


def child_argv(which: str, args, data: Path) -> list[str]:
    return ["--run", which, "--model", args.model, "--data", str(data), "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--device", args.device,
            "--threads", str(args.threads), "--attn", args.attn] + (["--padding-free"] if args.padding_free else [])


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
    p.add_argument("--repeats", type=int, default=3, help="pairs of runs (podium, TRL) per data set")
    p.add_argument("--threads", type=int, default=1, help="compute threads of each run (both sides alike)")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    add_model_arguments(p)
    args = p.parse_args()
    if args.run:
        print(json.dumps((run_trl if args.run == "trl" else run_podium)(args)))
        return

    args.attn = attention_for(args.device, args.attn)
    work, n_params = benchmark_model(args, MODEL, "dpo_vs_trl-")
    print(f"model: {args.preset or args.model_dir or 'tiny Llama'}, {n_params and round(n_params / 1e6, 2)}M params, "
          f"attention {args.attn}; {args.pairs} pairs, {args.steps} steps x "
          f"{args.batch_size} pairs; device {args.device}; {args.threads} thread(s) per run; {args.repeats} pairs "
          "of runs, interleaved", flush=True)
    for name in args.sets:
        plen, clen = SETS[name]
        data = work / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(args.pairs, plen, clen, seed=1)))
        script = str(Path(__file__).resolve())
        runs = interleave(script, {"podium": child_argv("podium", args, data), "trl": child_argv("trl", args, data)},
                          args.threads, args.repeats)
        pod, trl = runs["podium"], runs["trl"]
        ratio = training_ratios(pod, trl, reference_pass="reference_s")  # pairs/s ratio = inverse time ratio
        print(f"\n[{name}] prompt {plen} chars, completions {clen} chars")
        for side, rs in (("TRL", trl), ("podium", pod)):
            print(f"  {side:7}: wall " + " ".join(f"{r['wall_s']:.1f}" for r in rs) + " s; CPU "
                  + " ".join(f"{r['cpu_s']:.1f}" for r in rs) + " s; reference pass "
                  + " ".join(f"{r['reference_s']:.1f}" for r in rs) + " s; loop "
                  + " ".join(f"{r['train_s']:.1f}" for r in rs) + " s; peak +"
                  + " ".join(f"{r['peak_mb']:.0f}" for r in rs) + " MB")
        print(f"  ratio podium/TRL (median of {len(pod)} pairs): pairs/s x{ratio['speed']:.2f} (per pair: "
              + " ".join(f"{b['wall_s'] / a['wall_s']:.2f}" for a, b in zip(pod, trl))
              + f"); CPU time x{ratio['cpu_time']:.2f}; training loop x{ratio['train_loop']:.2f}; reference pass "
              f"x{ratio['reference_pass']:.2f}; peak memory x{ratio['peak_memory']:.2f}")
        print_curves(pod, trl, ratio["loss_curve_max_abs_diff"])
        for r in pod + trl:  # the same pairs on both sides: TRL's count of their tokens is the numerator
            r["loop_tokens_per_s"] = trl[0]["loop_tokens"] / r["loop_s"]
        print_absolute(pod, trl, "tokens")
        path = append_result("dpo_vs_trl", {
            "set": name, "prompt_chars": plen, "completion_chars": clen, "pairs": args.pairs, "steps": args.steps,
            "batch_size": args.batch_size, "device": args.device, "padding_free": args.padding_free,
            "model_params": n_params, "preset": args.preset, "attn_implementation": args.attn,
            "machine": machine(args.threads),
            "ratio": {"pairs_per_s": ratio["speed"], **{k: ratio[k] for k in ("cpu_time", "train_loop", "reference_pass",
                                                                       "peak_memory")}},
            "loss_curve_max_abs_diff": ratio["loss_curve_max_abs_diff"], "podium": pod, "trl": trl})
    print(f"\nresults appended to {path}")


if __name__ == "__main__":
    main()
