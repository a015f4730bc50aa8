"""podium `sft` vs TRL 1.16 SFTTrainer: tokens/s, peak memory and loss curves, side by side.

    PYTHONPATH=src python benchmarks/sft_vs_trl.py [--examples 64] [--steps 8] [--repeats 3] [--threads 1]
        [--preset qwen2.5-0.5b | --model-dir DIR] [--device cuda] [--attn auto]

Same tiny Llama (3.5M parameters, the character tokenizer) as benchmarks/dpo_vs_trl.py, same
`{"prompt", "completion"}` records of mixed lengths (prompt and completion each 16-256 characters),
completion-only loss, fp32 on CPU, no gradient checkpointing on either side (TRL's SFTConfig turns it
on by default; its best setting here is off), sequential batches on both sides so the curves compare.

Layouts, each podium one paired with the TRL one that sees the same batches (so the loss curves
must agree): podium `packing: false` (right-padded rows) with TRL's padded collator, and podium
`packing: true` with TRL's `padding_free=True` (both drop the padding; TRL flattens the batch into
one row, podium packs it into rows as long as its longest example). TRL's `packing=True` (BFD into
`max_length` rows) mixes examples across steps, so its curve differs; it is timed with
`--trl-bfd` and shown as "best TRL" when it is the fastest. Tokens/s counts the non-padding input
tokens of the epoch over the whole job (load, tokenise, train, save). One JSON line per layout to
benchmarks/results/sft_vs_trl.jsonl.

`--device cuda` runs both sides in bf16 (TRL: autocast over fp32 weights; podium: bf16 weights), with
flash_attention_2 when flash-attn is installed, else sdpa (both sides; `--attn` sets it). `--preset NAME` trains a random-init
model of a real architecture (benchmarks/side_by_side.py PRESETS; the character tokenizer padded to its
vocabulary). Absolute training-loop tokens/s (the epoch's tokens over each side's loop time) and MFU
(each side's model FLOPs, podium.training.flops, over that time and the measured peak) print too.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
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
    run_child,
    training_ratios,
)

MODEL = {"hidden_size": 256, "intermediate_size": 768, "num_layers": 4, "num_heads": 4}
# podium layout -> the TRL layout that sees the same batches
LAYOUTS = {"padded": "padded", "packed": "padding_free"}


def make_records(n: int, lo: int, hi: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz "

    def text():
        return "".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))

    return [{"prompt": text(), "completion": text()} for _ in range(n)]


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from podium.models.io import load_model, load_tokenizer

    pin_threads(args.threads)
    cuda = args.device == "cuda"
    base = peak_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), cpu_seconds()
    tok = load_tokenizer(args.model)
    model = load_model(args.model, device="cuda" if cuda else None, attn_implementation=args.attn)
    counter = FlopCounter(model)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(), learning_rate=args.lr, per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, lr_scheduler_type="constant", optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=not cuda, bf16=cuda,
        # TRL enforces no max_length with padding_free and refuses one; the records are far shorter than 1024.
        max_length=None if args.layout == "padding_free" else 1024,
        gradient_checkpointing=False, seed=0, disable_tqdm=True, dataloader_num_workers=0,
        train_sampling_strategy="sequential", packing=args.layout == "bfd", padding_free=args.layout != "padded",
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok)
    t1 = time.perf_counter()
    trainer.train()
    t2 = time.perf_counter()
    trainer.save_model(config.output_dir)
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb() - base
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"wall_s": wall, "cpu_s": cpu_seconds() - c0, "train_s": t2 - t1, "peak_mb": mem, "losses": losses,
            "loop_s": t2 - t1, "loop_mfu": counter.flops / (t2 - t1) / peak_for(args.device)}


def run_podium(args) -> dict:
    import torch

    pin_threads(args.threads)
    import trl  # noqa: F401  (the same imports as TRL's child, so the RSS baselines match)

    import podium.training.sft as sft_stage
    from podium.stages import load_all_stages, run_stage

    load_all_stages()
    train_s = {}
    loop = sft_stage.train_loop

    def timed_loop(*a, **kw):
        t = time.perf_counter()
        try:
            return loop(*a, **kw)
        finally:
            train_s["train_s"] = time.perf_counter() - t

    sft_stage.train_loop = timed_loop
    cuda = args.device == "cuda"
    out = Path(tempfile.mkdtemp())
    cfg = {"model": args.model, "data": args.data, "learning_rate": args.lr, "batch_size": args.batch_size,
           "max_steps": args.steps, "lr_scheduler": "constant", "optimizer": "adamw", "max_grad_norm": 1.0,
           "seed": 0, "max_length": 1024, "shuffle": False, "packing": args.layout == "packed",
           "attn_implementation": args.attn}
    if cuda:
        cfg["dtype"] = "bfloat16"
    base = peak_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), cpu_seconds()
    run_stage("sft", cfg, out / "run")
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb() - base
    steps = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    loop_s, loop_flops = podium_step_totals(steps, args.batch_size)
    return {"wall_s": wall, "cpu_s": cpu_seconds() - c0, **train_s, "peak_mb": mem, "losses": [s["loss"] for s in steps],
            "mfu": steps[-1].get("mfu"), "flops_per_second": steps[-1].get("flops_per_second"), "loop_s": loop_s,
            "loop_mfu": loop_flops / loop_s / peak_for(args.device) if loop_flops else None}


def epoch_tokens(data: Path, model: str, n: int) -> int:
    """Non-padding input tokens of the first `n` examples, as both sides tokenise them (prompt+completion+EOS)."""
    from podium.data.chat import tokenize_sft
    from podium.models.io import load_tokenizer

    tok = load_tokenizer(model)
    rows = [json.loads(line) for line in data.read_text().splitlines()][:n]
    return sum(len(tokenize_sft(r, tok, 1024)["input_ids"]) for r in rows)


def child_argv(which: str, layout: str, args, data: Path) -> list[str]:
    return ["--run", which, "--layout", layout, "--model", args.model, "--data", str(data), "--steps",
            str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--device", args.device,
            "--threads", str(args.threads), "--attn", args.attn]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", choices=["trl", "podium"])
    p.add_argument("--layout", choices=["padded", "packed", "padding_free", "bfd"])
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3, help="pairs of runs (podium, TRL) per layout")
    p.add_argument("--threads", type=int, default=1, help="compute threads of each run (both sides alike)")
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    p.add_argument("--trl-bfd", action="store_true", help="also time TRL's packing=True (BFD)")
    add_model_arguments(p)
    p.add_argument("--min-chars", type=int, default=16)
    p.add_argument("--max-chars", type=int, default=256)
    args = p.parse_args()
    if args.run:
        print(json.dumps((run_trl if args.run == "trl" else run_podium)(args)))
        return

    args.attn = attention_for(args.device, args.attn)
    work, n_params = benchmark_model(args, MODEL, "sft_vs_trl-")
    data = work / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(args.examples, args.min_chars,
                                                                          args.max_chars, seed=1)))
    tokens = epoch_tokens(data, args.model, args.steps * args.batch_size)
    print(f"model: {args.preset or args.model_dir or 'tiny Llama'}, {n_params and round(n_params / 1e6, 2)}M params, "
          f"attention {args.attn}; {args.examples} examples "
          f"({args.min_chars}-{args.max_chars} characters each side), {args.steps} steps x {args.batch_size}: "
          f"{tokens} tokens; device {args.device}; {args.threads} thread(s) per run; {args.repeats} pairs of runs",
          flush=True)
    script = str(Path(__file__).resolve())
    bfd = None
    if args.trl_bfd:
        bfd = [run_child(script, child_argv("trl", "bfd", args, data), args.threads) for _ in range(args.repeats)]
    results = {}
    for layout in args.layouts:
        peer_layout = LAYOUTS[layout]
        runs = interleave(script, {"podium": child_argv("podium", layout, args, data),
                                   "trl": child_argv("trl", peer_layout, args, data)}, args.threads, args.repeats)
        pod, trl = runs["podium"], runs["trl"]
        results[layout] = (pod, trl)
        ratio = training_ratios(pod, trl)
        print(f"\n[podium {layout} vs TRL {peer_layout}]")
        for side, rs in (("TRL", trl), ("podium", pod)):
            print(f"  {side:7}: wall " + " ".join(f"{r['wall_s']:.1f}" for r in rs) + " s ("
                  + " ".join(f"{tokens / r['wall_s']:.0f}" for r in rs) + " tokens/s); CPU "
                  + " ".join(f"{r['cpu_s']:.1f}" for r in rs) + " s; loop "
                  + " ".join(f"{r['train_s']:.1f}" for r in rs) + " s; peak +"
                  + " ".join(f"{r['peak_mb']:.0f}" for r in rs) + " MB")
        print(f"  ratio podium/TRL (median of {len(pod)} pairs): tokens/s x{ratio['speed']:.2f} (per pair: "
              + " ".join(f"{b['wall_s'] / a['wall_s']:.2f}" for a, b in zip(pod, trl))
              + f"); CPU time x{ratio['cpu_time']:.2f}; training loop x{ratio['train_loop']:.2f}; "
              f"peak memory x{ratio['peak_memory']:.2f}")
        print_curves(pod, trl, ratio["loss_curve_max_abs_diff"])
        for r in pod + trl:
            r["loop_tokens_per_s"] = tokens / r["loop_s"]
        print_absolute(pod, trl, "tokens")
        record = {"layout": layout, "peer_layout": peer_layout, "examples": args.examples, "steps": args.steps,
                  "batch_size": args.batch_size, "tokens": tokens, "device": args.device, "model_params": n_params,
                  "preset": args.preset, "attn_implementation": args.attn,
                  "machine": machine(args.threads),
                  "ratio": {"tokens_per_s": ratio["speed"], **{k: ratio[k] for k in ("cpu_time", "train_loop", "peak_memory")}},
                  "loss_curve_max_abs_diff": ratio["loss_curve_max_abs_diff"], "podium": pod, "trl": trl}
        if bfd:
            record["trl_bfd"] = bfd
        path = append_result("sft_vs_trl", record)
    # Podium's fastest layout against TRL's fastest (the BFD runs are not interleaved with podium's: indicative).
    best_pod = min(statistics.median(r["wall_s"] for r in pod) for pod, _ in results.values())
    trl_best = {lay: statistics.median(r["wall_s"] for r in trl) for lay, (_, trl) in results.items()}
    trl_best = {LAYOUTS[k]: v for k, v in trl_best.items()}
    if bfd:
        trl_best["bfd"] = statistics.median(r["wall_s"] for r in bfd)
    fastest = min(trl_best, key=trl_best.get)
    print(f"\nbest podium layout vs best TRL layout ({fastest}): tokens/s x{trl_best[fastest] / best_pod:.2f} "
          "(medians of wall times)")
    print(f"results appended to {path}")


if __name__ == "__main__":
    main()
