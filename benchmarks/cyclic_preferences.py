"""Cyclic preferences at toy scale: GPM vs Bradley–Terry pair accuracy (Zhang et al. 2024, arXiv:2410.02197).

Data: rock ≻ scissors ≻ paper ≻ rock, 3 pairs per prompt (podium.judging.cyclic). Both models
share the backbone (2-layer tiny Llama, hidden 32) and training settings; only the head differs.
Prints both held-out accuracies and saves accuracy-vs-step as a PNG.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/cyclic_preferences.py [--steps 600] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from podium.judging.cyclic import run_cyclic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--plot", default="benchmarks/results/cyclic_preferences.png")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    results = {"gpm": [], "reward": []}
    for seed in args.seeds:
        for kind, runs in results.items():
            t0 = time.perf_counter()
            r = run_cyclic(kind, steps=args.steps, eval_every=args.eval_every, seed=seed)
            r["seconds"] = time.perf_counter() - t0
            runs.append(r)
            print(f"seed {seed} {kind:>6}: held-out pair accuracy {r['accuracy']:.3f} "
                  f"({len(r['test'])} pairs, {r['seconds']:.1f}s)", flush=True)

    summary = {kind: sum(r["accuracy"] for r in rs) / len(rs) for kind, rs in results.items()}
    print(f"mean over seeds {args.seeds}: GPM {summary['gpm']:.3f}  Bradley-Terry {summary['reward']:.3f}  "
          f"(BT ceiling on a 3-cycle: 0.667)")

    if args.plot:
        from pathlib import Path

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        for kind, color, label in [("gpm", "tab:blue", "GPM (k=4, τ=0.1)"), ("reward", "tab:red", "Bradley–Terry")]:
            for i, r in enumerate(results[kind]):
                steps, acc = zip(*r["curve"])
                ax.plot(steps, acc, color=color, alpha=0.8, label=label if i == 0 else None)
        ax.axhline(2 / 3, color="gray", ls="--", lw=1, label="scalar ceiling 2/3")
        ax.set_xlabel("step")
        ax.set_ylabel("held-out pair accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_title("cyclic preferences (rock ≻ scissors ≻ paper ≻ rock)", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=100)
        print(f"plot: {args.plot}")
    print(json.dumps({"gpm_accuracy": summary["gpm"], "bt_accuracy": summary["reward"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
