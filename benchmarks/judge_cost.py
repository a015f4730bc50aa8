"""Judge cost: rank K responses with a GPM (K backbone passes) vs a pairwise judge (K(K−1) passes).

Both judges sit on the same backbone (tiny Llama, default hidden 128 × 4 layers); the pairwise
judge is a Bradley–Terry-style scalar head over the concatenated pair "[A] a [B] b"
(`ConcatPairScorer`), the shape of PairRM-style judges. Weights are random: only cost is measured.
Two regimes: `sequential` (one sequence per forward pass, the pass count dominates) and
`batched` (all sequences of a prompt in forward passes of up to --batch-size).
Times are medians over --prompts prompts; the ratio is pairwise / GPM.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/judge_cost.py [--k 8] [--prompts 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import time

import torch

from podium.judging import ConcatPairScorer, GPMJudge, PairwiseJudge
from podium.models.heads import GPMModel, RewardModel
from podium.models.tiny import build_tiny_model


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(n)).strip() or "x"


def time_judge(judge, items) -> float:
    """Median wall seconds per prompt."""
    times = []
    for prompt, responses in items:
        t0 = time.perf_counter()
        j = judge.preference_matrix(prompt, responses)
        times.append(time.perf_counter() - t0)
        assert j.valid, j.reason
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--prompts", type=int, default=10)
    p.add_argument("--response-chars", type=int, default=60)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    rng = random.Random(0)
    items = [(random_text(rng, 40), [random_text(rng, args.response_chars) for _ in range(args.k)])
             for _ in range(args.prompts)]
    size = {"hidden_size": args.hidden_size, "intermediate_size": 3 * args.hidden_size,
            "num_layers": args.layers, "max_position_embeddings": 1024}
    lm, tok = build_tiny_model(seed=0, **size)
    gpm = GPMModel(lm, k=4)
    lm2, _ = build_tiny_model(tok, seed=1, **size)
    pair_model = RewardModel(lm2)
    n_params = sum(p.numel() for p in gpm.backbone.parameters())

    rows = {}
    for regime, bs in [("sequential", 1), ("batched", args.batch_size)]:
        with torch.no_grad():
            gpm_time = time_judge(GPMJudge(gpm, tok, batch_size=bs), items)
        pair_judge = PairwiseJudge(ConcatPairScorer(pair_model, tok, batch_size=bs), batched=True)
        with torch.no_grad():
            pair_time = time_judge(pair_judge, items)
        rows[regime] = {"gpm_s": gpm_time, "pairwise_s": pair_time, "ratio": pair_time / gpm_time}

    k = args.k
    print(f"backbone: {n_params / 1e6:.2f}M params ({args.hidden_size}x{args.layers}), K={k}, "
          f"{args.response_chars}-char responses, {args.prompts} prompts, {args.threads} thread(s)")
    print(f"passes per prompt: GPM {k}, pairwise {k * (k - 1)} (pair sequences ~2x longer)")
    for regime, r in rows.items():
        print(f"{regime:>10}: GPM {r['gpm_s'] * 1e3:8.1f} ms/prompt   pairwise {r['pairwise_s'] * 1e3:8.1f} "
              f"ms/prompt   pairwise/GPM = {r['ratio']:.1f}x")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
