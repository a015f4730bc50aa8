"""Where the time goes on podium's hot paths: matmul, attention, log-softmax, data and Python overhead.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/profile_hot_paths.py [--paths dpo reference sft sft_packed sample]

Each path runs a few times to warm up and once under torch.profiler (CPU, one thread) on the tiny
Llama of benchmarks/dpo_vs_trl.py (3.5M parameters) and that benchmark's data:

- `dpo`: one training step of DPO on 8 prompt-heavy pairs (collate, forward, backward, AdamW step);
- `reference`: the reference pass over the same 8 pairs (collate, no-grad forward);
- `sft`, `sft_packed`: one SFT step on 8 examples of benchmarks/sft_vs_trl.py's data, padded / packed;
- `sample`: 4 prompts x K = 8 samples of up to 64 tokens at batch 32 (benchmarks/generate.py's prompts).

Fractions are of the step's wall time under the profiler (op durations are wall clock; on a shared
machine preemption stretches ops and the rest alike). Every aten op that runs outside another aten op counts once, in
the class of its name or, in the backward pass, of the autograd node that ran it: matmul (mm, addmm,
bmm, linear), attention (scaled_dot_product_*, and podium's shared-prefix decoding attention),
log-softmax (log_softmax, logsumexp, gather of target logits, cross-entropy; in sampling also the
token selection: filtering, softmax, inverse-CDF draw), other ops (norms, rotary, activations, the
optimizer, copies), data (building the batch: `collate`/`pack_*`, tokenised examples in, tensors out),
and Python overhead: the rest of the step's time (module calls, mask construction in Python,
autograd bookkeeping, the loop's own code). One JSON line per path goes to
benchmarks/results/profile.jsonl, tagged with `--label` (e.g. before / after).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dpo_vs_trl import MODEL, SETS, make_pairs  # noqa: E402
from benchmarks.generate import make_prompts  # noqa: E402
from benchmarks.sft_vs_trl import make_records  # noqa: E402
from benchmarks.side_by_side import append_result, cpu_seconds, load1, machine  # noqa: E402

CLASSES = ("matmul", "attention", "log-softmax", "other ops", "data", "python overhead")
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm",
          "MmBackward", "AddmmBackward", "BmmBackward", "LinearBackward")
ATTENTION = ("scaled_dot_product", "ScaledDotProduct", "shared_prefix_attention")
LOG_SOFTMAX = ("log_softmax", "logsumexp", "LogSoftmax", "Logsumexp", "cross_entropy", "nll_loss", "NllLoss",
               "aten::gather", "GatherBackward",
               # sampling's token selection (top-p sort, softmax, inverse-CDF draw)
               "aten::sort", "aten::softmax", "aten::_softmax", "aten::cumsum", "aten::topk")


def classify(names: list[str]) -> str:
    """The class of an op from its own name and its ancestors' (an op inside attention is attention)."""
    for keys, cls in ((ATTENTION, "attention"), (LOG_SOFTMAX, "log-softmax"), (MATMUL, "matmul")):
        if any(k in name for name in names for k in keys):
            return cls
    return "other ops"


def fractions(prof, total: float) -> dict[str, float]:
    """Seconds per class from a profile of a block that took `total` seconds (wall clock, as the profiler's
    op durations are)."""
    seconds = dict.fromkeys(CLASSES, 0.0)
    for ev in prof.events():
        chain, p = [], ev.cpu_parent
        while p is not None:
            chain.append(p.name)
            p = p.cpu_parent
        if ev.name == "data" and not chain:
            seconds["data"] += ev.cpu_time_total / 1e6
            continue
        if not ev.name.startswith("aten::") or "data" in chain or any(n.startswith("aten::") for n in chain):
            continue  # counted with its outermost op, or inside the data block
        seconds[classify([ev.name, *chain])] += ev.cpu_time_total / 1e6
    ops = sum(v for k, v in seconds.items() if k not in ("data", "python overhead"))
    seconds["python overhead"] = max(0.0, total - ops - seconds["data"])
    return seconds


def dpo_parts(args):
    from podium.data.preference import tokenize_pairs
    from podium.models.tiny import build_tiny_model
    from podium.training.logps import pair_logps
    from podium.training.pair_layout import pack_pairs

    model, tok = build_tiny_model(seed=0, **MODEL)
    plen, clen = SETS[args.dpo_set]
    examples, _ = tokenize_pairs(make_pairs(8, plen, clen, seed=1), tok, 1024)
    return model, tok, examples, pack_pairs, pair_logps


def path_dpo(args):
    model, tok, examples, pack_pairs, pair_logps = dpo_parts(args)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ref = torch.zeros(len(examples))

    def step():
        with record_function("data"):
            batch = pack_pairs(examples, tok.pad_token_id, prefix_sharing=True)
        logps = pair_logps(model, batch).logps
        B = len(examples)
        loss = -torch.nn.functional.logsigmoid(0.1 * ((logps[:B] - ref) - (logps[B:] - ref))).sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def path_reference(args):
    model, tok, examples, pack_pairs, pair_logps = dpo_parts(args)
    model.eval()

    @torch.no_grad()
    def step():
        with record_function("data"):
            batch = pack_pairs(examples, tok.pad_token_id, prefix_sharing=True)
        pair_logps(model, batch)

    return step


def sft_path(packed: bool):
    def build(args):
        from podium.data.chat import tokenize_sft
        from podium.data.collate import pack_batch, pad_batch
        from podium.models.tiny import build_tiny_model
        from podium.training.sft import sft_objective

        model, tok = build_tiny_model(seed=0, **MODEL)
        examples = [tokenize_sft(r, tok, 1024) for r in make_records(8, 16, 256, seed=1)]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        collate = pack_batch if packed else pad_batch

        def step():
            with record_function("data"):
                batch = collate(examples, tok.pad_token_id)
            loss, _ = sft_objective(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    return build


def path_sample(args):
    from podium.generation.hf_sampler import TransformersSampler
    from podium.generation.sampler import SamplingParams
    from podium.models.tiny import build_tiny_model

    model, tok = build_tiny_model(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4)
    model.eval()
    prompts = make_prompts(4)
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=64)

    def step():
        TransformersSampler(model, tok, batch_size=32).generate(prompts, n=8, params=params, seed=0)

    return step


PATHS = {"dpo": path_dpo, "reference": path_reference, "sft": sft_path(False), "sft_packed": sft_path(True),
         "sample": path_sample}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    ap.add_argument("--label", default="current", help="tag of the JSON lines (e.g. before, after)")
    ap.add_argument("--dpo-set", default="prompt-heavy", choices=list(SETS))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'path':11} {'wall s':>6} " + " ".join(f"{c:>15}" for c in CLASSES))
    for name in args.paths:
        step = PATHS[name](args)
        for _ in range(args.warmup):
            step()
        load = load1()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            c, t = cpu_seconds(), time.perf_counter()
            step()
            cpu, wall = cpu_seconds() - c, time.perf_counter() - t
        sec = fractions(prof, wall)
        share = {k: v / wall for k, v in sec.items()}
        print(f"{name:11} {wall:6.2f} " + " ".join(f"{100 * share[c]:14.1f}%" for c in CLASSES))
        append_result("profile", {"label": args.label, "path": name, "cpu_s": cpu, "wall_s": wall, "load": load,
                                  "fractions": share, "machine": machine(args.threads)})
    print("(wall time under the profiler, which adds its own cost to every op; fractions of that time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
