"""Judge cost: rank K responses with a GPM (K backbone passes) vs a pairwise judge (K(K−1) passes).

Both judges sit on the same backbone (tiny Llama, default hidden 128 × 4 layers); the pairwise
judge is a Bradley–Terry-style scalar head over the concatenated pair "[A] a [B] b"
(`ConcatPairScorer`), the shape of PairRM-style judges. Weights are random: only cost is measured.
Two regimes: `sequential` (one sequence per forward pass, the pass count dominates) and
`batched` (all sequences of a prompt in forward passes of up to --batch-size).
Times are medians over --prompts prompts; the ratio is pairwise / GPM.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/judge_cost.py [--k 8] [--prompts 10]

`--pairrm` instead times podium's native PairRM against llm-blender 0.0.2's own `Blender.rank(...,
return_scores=True)` (its venv: tests/pairrm_oracle.py) on the same random-init checkpoint (DeBERTa-v2, default
hidden 384 x 6 layers, deberta-v3's tokenizer layout) and the same candidate sets (K = 5, prompts and
responses of random lengths), each in its own process with the same threads: pairs/s = prompts x K(K-1) / seconds
(best of --repeats), for llm-blender at batch_size 1 (SPPO's rank.py) and 8 (its default), and the largest
difference of the scores.

    .venv/bin/python benchmarks/judge_cost.py --pairrm [--prompts 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
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


def pairrm_items(rng: random.Random, n: int, k: int) -> list[tuple[str, list[str]]]:
    """Candidate sets of random lengths: prompts of 10-150 words, responses of 5-250 words."""
    from pairrm_fixtures import WORDS

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + rng.choice([".", "?", "!"])

    return [(text(10, 150), [text(5, 250) for _ in range(k)]) for _ in range(n)]


def pairrm_vs_llm_blender(args) -> int:
    """podium's PairRMJudge vs llm-blender's Blender.rank on one checkpoint and one set of inputs."""
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from pairrm_fixtures import build_tiny_pairrm
    from pairrm_oracle import run_oracle

    from podium.judging.pairrm import PairRMJudge
    from podium.models.pairrm import load_pairrm

    rng = random.Random(0)
    items = pairrm_items(rng, args.prompts, args.k)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_pairrm(Path(tmp), hidden_size=args.hidden_size, num_hidden_layers=args.layers,
                                   num_attention_heads=max(1, args.hidden_size // 64),
                                   intermediate_size=4 * args.hidden_size, position_buckets=256,
                                   max_position_embeddings=512)["llm-blender"]
        inputs, cands = [x for x, _ in items], [c for _, c in items]
        blender = {bs: run_oracle([{"op": "time_rank", "pairrm": str(folder), "inputs": inputs, "candidates": cands,
                                    "batch_size": bs, "repeats": args.repeats}], threads=args.threads)[0]
                   for bs in (1, 8)}
        judge = PairRMJudge(load_pairrm(folder, device="cpu"), batch_size=args.batch_size,
                            max_batch_tokens=args.max_batch_tokens)
        best, cpu, judged = float("inf"), float("inf"), None
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            judged = judge.judge_many(items)
            best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        lengths = pair_lengths(judge, items)
    pairs = args.prompts * args.k * (args.k - 1)
    podium_scores = [j.response_scores.tolist() for j in judged]
    print(f"PairRM, DeBERTa-v2 {args.hidden_size}x{args.layers}, K={args.k}, {args.prompts} prompts ({pairs} ordered "
          f"pairs), {args.threads} thread(s), best of {args.repeats}; pair sequences {min(lengths)}-{max(lengths)} tokens "
          f"(mean {statistics.mean(lengths):.0f})")
    rows = {"podium": {"seconds": best, "cpu_seconds": cpu}}
    for bs, r in blender.items():
        diff = max(abs(a - b) for ps, bs_ in zip(podium_scores, r["scores"]) for a, b in zip(ps, bs_))
        rows[f"llm-blender rank batch_size={bs}"] = {"seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"],
                                                      "max_abs_score_diff": diff}
    # Pairs per second of wall time, and per second of the process's CPU time (which a machine shared with other
    # work disturbs less: it counts only this process's threads).
    for name, r in rows.items():
        r.update(pairs_per_s=pairs / r["seconds"], pairs_per_cpu_s=pairs / r["cpu_seconds"])
        wall, cpu_ratio = rows["podium"]["pairs_per_s"] / r["pairs_per_s"], rows["podium"]["pairs_per_cpu_s"] / r["pairs_per_cpu_s"]
        print(f"{name:>32}: {r['pairs_per_s']:7.1f} pairs/s ({r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU)   "
              f"podium x{wall:.2f} wall, x{cpu_ratio:.2f} CPU"
              + (f"   max |score diff| {r['max_abs_score_diff']:.1e}" if "max_abs_score_diff" in r else ""))
    print(json.dumps(rows))
    return 0


def pair_lengths(judge, items) -> list[int]:
    out = []
    for prompt, responses in items:
        source, cands = judge.encoder.segments(prompt, responses)
        out += [len(source) + len(a) + len(b) for i, a in enumerate(cands) for j, b in enumerate(cands) if i != j]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairrm", action="store_true", help="podium's PairRM vs llm-blender's rank (see the docstring)")
    p.add_argument("--repeats", type=int, default=2, help="--pairrm: best of this many runs")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="--pairrm: podium's padded tokens per pass "
                   "(default: the judge's, 2048 on CPU)")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--prompts", type=int, default=10)
    p.add_argument("--response-chars", type=int, default=60)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.pairrm:
        if "--k" not in (argv or sys.argv):
            args.k = 5
        if "--hidden-size" not in (argv or sys.argv):
            args.hidden_size = 384
        if "--layers" not in (argv or sys.argv):
            args.layers = 6
        if "--prompts" not in (argv or sys.argv):
            args.prompts = 32
        return pairrm_vs_llm_blender(args)

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
