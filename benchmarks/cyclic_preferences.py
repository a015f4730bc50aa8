"""Cyclic preferences from an ordinary backbone: GPM vs Bradley–Terry (Zhang et al. 2024, arXiv:2410.02197).

Data: rock ≻ scissors ≻ paper ≻ rock, 3 pairs per prompt, each response its type plus a random
suffix (so the model must read the type). No scalar reward orders a cycle: Bradley–Terry's optimum on
balanced cyclic pairs is a tie (log 2, ~0.5 held-out accuracy); a GPM with k >= 1 can place the types
120° apart and get all three relations right. A transitive control (rock ≻ scissors ≻ paper,
rock ≻ paper) shows that both heads learn when a scalar can order the data.

The backbone is what a new user has: a standard-init tiny Llama (hidden 32, 2 layers, init std 0.02)
fine-tuned 300 steps on the pair texts (`podium sft`), as reward models start from an SFT model. The
heads are trained with `podium train` (`objective: gpm | reward`, batch 32, 5 epochs, the objective's
default learning rate and head options), then scored with `podium eval preference`'s function.
Per seed: one backbone, every head on it. Prints each held-out pair accuracy and the mean with a 95 %
confidence interval over seeds, and saves a bar plot with error bars.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/cyclic_preferences.py [--seeds 0 1 2] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import tempfile
from pathlib import Path

TYPES = ("rock", "paper", "scissors")
CYCLE = (("rock", "scissors"), ("scissors", "paper"), ("paper", "rock"))  # (winner, loser)
TRANSITIVE = (("rock", "scissors"), ("scissors", "paper"), ("rock", "paper"))
# (label, data, objective, head options); {} = the objective's defaults.
RUNS = (
    ("GPM", "cyclic", "gpm", {}),
    ("Bradley–Terry", "cyclic", "reward", {}),
    ("GPM, last-token pooling", "cyclic", "gpm", {"pooling": "last"}),
    ("Bradley–Terry, transitive", "transitive", "reward", {}),
    ("GPM, transitive", "transitive", "gpm", {}),
)


def preference_pairs(n_prompts: int, relations=CYCLE, seed: int = 0, suffix_len: int = 3) -> list[dict]:
    """One pair per relation for each prompt, so every relation is equally frequent."""
    rng = random.Random(seed)

    def noise(n):
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))

    rows = []
    for _ in range(n_prompts):
        prompt = f"pick {noise(4)}"
        response = {t: f"{t} {noise(suffix_len)}" for t in TYPES}
        for winner, loser in relations:
            rows.append({"prompt": prompt, "chosen": response[winner], "rejected": response[loser],
                         "relation": f"{winner}>{loser}"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ordinary_backbone(work: Path, seed: int, pairs: list[dict], sft_steps: int = 300) -> Path:
    """A standard-init tiny Llama fine-tuned on every response text of `pairs` (`podium sft`)."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model
    from podium.stages import run_stage

    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=seed)
    base = save_model(model, tok, work / "base")
    texts = [{"prompt": r["prompt"], "completion": r[side]} for r in pairs for side in ("chosen", "rejected")]
    data = write_jsonl(work / "texts.jsonl", texts)
    run_stage("sft", {"model": str(base), "data": str(data), "learning_rate": 1e-3, "batch_size": 32,
                      "max_steps": sft_steps, "seed": seed, "max_length": 64}, work / "sft")
    return work / "sft"


def train_head(backbone: Path, train_file: Path, out: Path, objective: str, head: dict, seed: int) -> Path:
    """`podium train` with objective gpm or reward: batch 32, 5 epochs, default learning rate."""
    from podium.stages import run_stage

    run_stage("train", {"objective": objective, "model": str(backbone), "data": str(train_file), "batch_size": 32,
                        "epochs": 5, "seed": seed, "max_length": 64, "head": head}, out)
    return out


def held_out_accuracy(model_dir: Path, test: list[dict]) -> float:
    from podium.data.response_batches import make_pair_collate
    from podium.evaluation.preference_accuracy import preference_accuracy
    from podium.models.heads import load_preference_model

    model, tok = load_preference_model(model_dir)
    return preference_accuracy(model, test, make_pair_collate(tok), 64)["accuracy"]


def run_seed(seed: int, work: Path, runs=RUNS, n_train: int = 200, n_test: int = 50) -> dict[str, float]:
    """Held-out pair accuracy of every run in `runs` on one seed's backbone."""
    data = {name: (preference_pairs(n_train, rel, seed), preference_pairs(n_test, rel, seed + 1000))
            for name, rel in (("cyclic", CYCLE), ("transitive", TRANSITIVE))}
    backbone = ordinary_backbone(work, seed, data["cyclic"][0] + data["transitive"][0])
    out = {}
    for label, which, objective, head in runs:
        train, test = data[which]
        folder = work / f"{which}-{objective}-{head.get('pooling', 'default')}"
        train_head(backbone, write_jsonl(work / f"{which}.jsonl", train), folder, objective, head, seed)
        out[label] = held_out_accuracy(folder, test)
    return out


def main(argv=None) -> int:
    import torch

    from podium.evaluation.intervals import mean_interval

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--plot", default="benchmarks/results/cyclic_preferences.png")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    per_seed = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as work:
            acc = run_seed(seed, Path(work))
        per_seed.append(acc)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
    summary = {}
    for label, *_ in RUNS:
        iv = mean_interval([a[label] for a in per_seed])
        summary[label] = iv
        ci = "" if iv.low is None else f" ± {iv.half_width:.3f} [{iv.low:.3f}, {iv.high:.3f}]"
        print(f"{label:>28}: held-out pair accuracy {iv.mean:.3f}{ci}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.4))
        labels = [label for label, *_ in RUNS]
        for i, label in enumerate(labels):
            iv = summary[label]
            err = None if iv.low is None else [[iv.mean - iv.low], [iv.high - iv.mean]]
            ax.bar(i, iv.mean, color="tab:blue" if "GPM" in label else "tab:red", alpha=0.7)
            ax.errorbar([i], [iv.mean], yerr=err, color="black", capsize=4)
            ax.scatter([i] * len(per_seed), [a[label] for a in per_seed], color="black", s=8)
        ax.axhline(2 / 3, color="gray", ls="--", lw=1, label="scalar ceiling on a 3-cycle (2/3)")
        ax.set_xticks(range(len(labels)), [lb.replace(", ", ",\n") for lb in labels], fontsize=7)
        ax.set_ylabel("held-out pair accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"ordinary backbone, podium train defaults; mean ± 95 % CI over seeds {args.seeds}", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=100)
        print(f"plot: {args.plot}")
    print(json.dumps({label: {"mean": iv.mean, "low": iv.low, "high": iv.high} for label, iv in summary.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
