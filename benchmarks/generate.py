"""Tokens per second: podium's batched sampler vs a plain per-prompt `model.generate` loop.

Same model (by default the quickstart's tiny Llama from podium.models.tiny, 0.9M params;
`--hidden-size 256` for a 3.5M-parameter one), same 32 chat prompts of different lengths,
same sampling settings (temperature 1, top_p 0.95, max_new_tokens), CPU. The peer is what a script without a sampler does: one
`model.generate(do_sample=True)` call per prompt. Both count generated tokens (EOS
included) over wall time. Other processes share this CPU, so each side is timed
`--repeats` times and the best run is kept.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generate.py [--hidden-size 128 --max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import time

import torch

from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams, encode_prompts
from podium.models.tiny import build_tiny_model


def make_prompts(count: int) -> list[list[dict]]:
    words = [
        "add",
        "the",
        "numbers",
        "then",
        "explain",
        "each",
        "step",
        "of",
        "the",
        "sum",
        "carefully",
        "please",
    ]
    return [
        [
            {
                "role": "user",
                "content": f"What is {i} + {2 * i}? " + " ".join(words[: 1 + (i * 7) % len(words)]),
            }
        ]
        for i in range(count)
    ]


def run_podium(model, tok, prompts, params, batch_size) -> tuple[int, float]:
    sampler = TransformersSampler(model, tok, batch_size=batch_size)
    t0 = time.perf_counter()
    out = sampler.generate(prompts, n=1, params=params, seed=0)
    seconds = time.perf_counter() - t0
    return sum(c.num_tokens for row in out for c in row), seconds


@torch.inference_mode()
def run_generate_loop(model, tok, prompts, params) -> tuple[int, float]:
    ids = encode_prompts(tok, prompts)
    torch.manual_seed(0)
    tokens = 0
    t0 = time.perf_counter()
    for p in ids:
        x = torch.tensor([p])
        y = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=None,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        tokens += y.shape[1] - x.shape[1]
    return tokens, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    torch.set_grad_enabled(False)
    model, tok = build_tiny_model(
        hidden_size=args.hidden_size,
        intermediate_size=3 * args.hidden_size,
        num_layers=args.layers,
        num_heads=4,
    )
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    prompts = make_prompts(args.prompts)
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=args.max_new_tokens)

    run_podium(model, tok, prompts[:2], params, args.batch_size)  # warm-up
    # Interleaved, so both sides see the same background load; best run of each kept.
    runs_p, runs_g = [], []
    for _ in range(args.repeats):
        runs_p.append(run_podium(model, tok, prompts, params, args.batch_size))
        runs_g.append(run_generate_loop(model, tok, prompts, params))
    best_p = max(runs_p, key=lambda r: r[0] / r[1])
    best_g = max(runs_g, key=lambda r: r[0] / r[1])
    tps_p, tps_g = best_p[0] / best_p[1], best_g[0] / best_g[1]
    print(
        f"model: tiny Llama, {n_params / 1e6:.2f}M params, hidden {args.hidden_size}, {args.layers} layers; "
        f"{args.prompts} prompts, max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"podium TransformersSampler (batch {args.batch_size}): {best_p[0]} tokens in {best_p[1]:.2f}s "
        f"= {tps_p:.0f} tok/s"
    )
    print(
        f"per-prompt model.generate loop:           {best_g[0]} tokens in {best_g[1]:.2f}s = {tps_g:.0f} tok/s"
    )
    print(f"ratio podium / generate: {tps_p / tps_g:.1f}x (target >= 5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
