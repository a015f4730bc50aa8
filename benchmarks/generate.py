"""Tokens per second: podium's sampler vs `model.generate` batched with a static KV cache, K samples per prompt.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generate.py [--prompts 32 --k 8 --batch-size 32]
        [--preset qwen2.5-0.5b] [--device cuda] [--peer static vllm]

Same model (by default the quickstart's tiny Llama from podium.models.tiny, 0.9M parameters;
`--hidden-size 256` for a 3.5M one), same 32 chat prompts of different lengths, same sampling
settings (temperature 1, top_p 0.95, `--max-new-tokens` 128), K = 8 samples per prompt, and the same
number of sequences decoded together on both sides (`--batch-size` 32 = 4 prompts x 8 samples):
the peer is `model.generate(..., num_return_sequences=K, cache_implementation="static")` over
groups of `batch_size / K` left-padded prompts, what a script would write with transformers alone.
`--peer dynamic` times transformers' default dynamic cache as well. Both count generated tokens (up
to and including the first EOS) over the time of the whole job.

The sides are timed alternately in one process (`--repeats` pairs, each thread-pinned alike); the
result is the median of the per-pair ratios of tokens per CPU-second (CPU time moves less than wall
time when other processes share the cores) and of tokens per wall-second, with the load recorded.
One JSON line goes to benchmarks/results/generate.jsonl.

`--preset NAME` samples from a random-init model of a real architecture instead (benchmarks/side_by_side.py
PRESETS; sdpa attention, which podium's shared-prefix decoding needs). `--device cuda` runs on the GPU in
bf16; `--peer vllm` adds vLLM (podium's VLLMSampler over the same weights saved to a folder, all prompts
handed to the engine at once: its own batching; the engine's start is not timed). Absolute tokens/s and a
decode MFU (2 x matmul parameters per token over the measured peak; attention and prefill not counted)
print per side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.side_by_side import (  # noqa: E402
    PRESETS,
    append_result,
    build_preset,
    cpu_seconds,
    decode_flops_per_token,
    load1,
    machine,
    peak_for,
)

from podium.generation.hf_sampler import TransformersSampler  # noqa: E402
from podium.generation.sampler import SamplingParams, encode_prompts  # noqa: E402
from podium.generation.vllm_sampler import VLLMSampler  # noqa: E402  (imports vllm only when built)
from podium.models.io import save_model  # noqa: E402
from podium.models.tiny import build_tiny_model  # noqa: E402


def make_prompts(count: int) -> list[list[dict]]:
    words = ["add", "the", "numbers", "then", "explain", "each", "step", "of", "the", "sum", "carefully", "please"]
    return [[{"role": "user", "content": f"What is {i} + {2 * i}? " + " ".join(words[: 1 + (i * 7) % len(words)])}]
            for i in range(count)]


def run_podium(model, tok, prompts, params, k, batch_size) -> int:
    out = TransformersSampler(model, tok, batch_size=batch_size).generate(prompts, n=k, params=params, seed=0)
    return sum(c.num_tokens for row in out for c in row)


@torch.inference_mode()
def run_generate(model, tok, prompts, params, k, batch_size, cache: str) -> int:
    """`model.generate` on groups of batch_size / k prompts, k return sequences each."""
    ids = encode_prompts(tok, prompts)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    group = max(1, batch_size // k)
    tokens = 0
    torch.manual_seed(0)
    for g in range(0, len(ids), group):
        chunk = ids[g:g + group]
        width = max(map(len, chunk))
        x = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=model.device)
        y = model.generate(input_ids=x, attention_mask=mask, do_sample=True, temperature=params.temperature,
                           top_p=params.top_p, top_k=None, max_new_tokens=params.max_new_tokens,
                           num_return_sequences=k, pad_token_id=pad, eos_token_id=eos,
                           cache_implementation=cache)
        for row in y[:, width:]:
            stop = (row == eos).nonzero()
            tokens += int(stop[0]) + 1 if len(stop) else row.shape[0]
    return tokens


def run_vllm(llm, prompts, params, k) -> int:
    return sum(c.num_tokens for row in llm.generate(prompts, n=k, params=params, seed=0) for c in row)


def timed(fn) -> dict:
    t, c = time.perf_counter(), cpu_seconds()
    n = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    return {"tokens": n, "wall_s": wall, "cpu_s": cpu, "tokens_per_s": n / wall, "tokens_per_cpu_s": n / cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--k", type=int, default=8, help="samples per prompt")
    ap.add_argument("--batch-size", type=int, default=32, help="sequences decoded together, both sides")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peer", nargs="+", default=["static"], choices=["static", "dynamic", "vllm"])
    ap.add_argument("--preset", choices=list(PRESETS), help="a random-init model of a real architecture")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    if args.preset:
        model, tok = build_preset(args.preset, dtype=dtype, attn_implementation="sdpa")
    else:
        model, tok = build_tiny_model(hidden_size=args.hidden_size, intermediate_size=3 * args.hidden_size,
                                      num_layers=args.layers, num_heads=4)
    model.to(device=args.device, dtype=dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    llm = None
    if "vllm" in args.peer:  # the same weights, from a folder; 0.4 of the GPU leaves room for the HF model
        folder = save_model(model, tok, Path(tempfile.mkdtemp(prefix="generate-")) / "model")
        llm = VLLMSampler(str(folder), dtype="bfloat16" if args.device == "cuda" else "float32",
                          gpu_memory_utilization=0.4, max_model_len=2048)
    prompts = make_prompts(args.prompts)
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=args.max_new_tokens)
    sides = {"podium": lambda: run_podium(model, tok, prompts, params, args.k, args.batch_size)}
    for cache in (c for c in args.peer if c != "vllm"):
        sides[f"generate_{cache}"] = lambda cache=cache: run_generate(model, tok, prompts, params, args.k,
                                                                      args.batch_size, cache)
    if llm is not None:
        sides["vllm"] = lambda: run_vllm(llm, prompts, params, args.k)
        run_vllm(llm, prompts[:2], params, args.k)  # warm-up
    # Warm-up (kernel selection, allocator) on a small job per side.
    run_podium(model, tok, prompts[:2], params, args.k, args.batch_size)
    hf_peers = [c for c in args.peer if c != "vllm"]
    if hf_peers:
        run_generate(model, tok, prompts[:1], SamplingParams(temperature=1.0, max_new_tokens=4), args.k,
                     args.batch_size, hf_peers[0])
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    loads = [load1()]
    names = list(sides)
    for i in range(args.repeats):  # A B, B A, ...: a drift in background load hits both sides
        for name in names if i % 2 == 0 else names[::-1]:
            runs[name].append(timed(sides[name]))
            loads.append(load1())
    per_token, peak = decode_flops_per_token(model), peak_for(args.device)
    for rs in runs.values():
        for r in rs:
            r["mfu"] = r["tokens_per_s"] * per_token / peak
    shape = args.preset or f"tiny Llama, hidden {args.hidden_size}, {args.layers} layers"
    print(f"model: {shape}, {n_params / 1e6:.2f}M params, {args.device} {str(dtype).replace('torch.', '')}; "
          f"{args.prompts} prompts x K={args.k}, {args.batch_size} sequences decoded together, max_new_tokens "
          f"{args.max_new_tokens}; {args.threads} thread(s); load {min(loads)}-{max(loads)}")
    for name, rs in runs.items():
        print(f"  {name:17}: " + ", ".join(f"{r['tokens']} tokens {r['wall_s']:.1f}s wall {r['cpu_s']:.1f}s CPU "
                                           f"({r['tokens_per_s']:.0f} tokens/s, decode MFU {r['mfu']:.4f})"
                                           for r in rs))
    ratios = {}
    for peer in names[1:]:
        cpu = statistics.median(a["tokens_per_cpu_s"] / b["tokens_per_cpu_s"] for a, b in zip(runs["podium"], runs[peer]))
        wall = statistics.median(a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs["podium"], runs[peer]))
        ratios[peer] = {"tokens_per_cpu_s": cpu, "tokens_per_s": wall}
        print(f"ratio podium / {peer} (median of {args.repeats} pairs): tokens per CPU-second x{cpu:.2f}, "
              f"tokens per second x{wall:.2f}")
    path = append_result("generate", {
        "prompts": args.prompts, "k": args.k, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "model_params": n_params, "hidden_size": args.hidden_size, "layers": args.layers, "preset": args.preset,
        "device": args.device, "attn_implementation": model.config._attn_implementation,
        "machine": machine(args.threads), "load": loads, "ratio": ratios, "runs": runs})
    print(f"result appended to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
