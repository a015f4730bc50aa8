"""Smaug's central claim at toy scale: DPO lowers the chosen log-ratio on low-edit-distance pairs, DPOP does not.

    PYTHONPATH=src python benchmarks/smaug_margin.py [--steps 60] [--out smaug_margin.png]

Pairs differ in one early token: the first digit of the answer to "a+b=" is corrupted, and the
rest of the completion is shared ("57 is the sum ..." vs "97 is the sum ..."). Pal et al. (2024,
"Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive") show that DPO can
then raise the margin rho_w - rho_l while the chosen log-ratio rho_w = log pi(y_w|x) -
log pi_ref(y_w|x) falls below zero; DPOP (lambda = 50) keeps rho_w >= 0. Both runs use the
`train` stage with the same tiny model, data and seed; the curves are read from metrics.jsonl
(rewards are beta * log-ratios, so they are divided by beta).

The starting model (policy and reference) is first fitted for 100 steps on both completions
(NLL), so that, like the pretrained models of the paper, it already finds the shared tail likely;
from a random initialisation DPO can raise the chosen log-ratio by fitting the tail alone.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

BETA = 0.1
MODEL = {"hidden_size": 64, "intermediate_size": 192, "num_layers": 2, "num_heads": 4}


def corrupted_digit_pairs(n: int, seed: int = 0) -> list[dict]:
    """Addition prompts; chosen = the sum + a shared tail, rejected = the same with its first digit changed."""
    rng = random.Random(seed)
    tail = " is the sum of the two numbers."
    rows = []
    for _ in range(n):
        a, b = rng.randint(10, 49), rng.randint(10, 49)
        right = str(a + b)
        wrong = str((int(right[0]) + rng.randint(1, 9)) % 10) + right[1:]
        rows.append({"prompt": f"{a}+{b}=", "chosen": right + tail, "rejected": wrong + tail})
    return rows


def run(objective: str, lambda_: float, work: Path, steps: int, model_dir: Path, data: Path) -> list[dict]:
    from podium.stages import run_stage

    out = work / objective
    cfg = {"objective": objective, "model": str(model_dir), "data": str(data), "beta": BETA,
           **({"lambda": lambda_} if objective == "dpop" else {}),  # plain DPO takes no lambda
           "learning_rate": 1e-3, "optimizer": "adamw", "lr_scheduler": "constant", "batch_size": 16,
           "max_steps": steps, "seed": 0, "max_length": 128, "max_grad_norm": None,
           "reference_cache_dir": str(work / "cache")}
    run_stage("train", cfg, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "chosen_logratio": r["rewards/chosen"] / BETA,
             "margin": r["rewards/margins"] / BETA} for r in rows]


def fit_completions(model, tok, rows: list[dict], steps: int, lr: float = 3e-3) -> None:
    """A short NLL fit of the model on chosen and rejected completions (the "pretrained" start)."""
    import torch

    from podium.data.preference import tokenize_pairs
    from podium.training.logps import sequence_logps
    from podium.training.pair_layout import pack_pairs

    examples, _ = tokenize_pairs(rows, tok, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(1000)
    for _ in range(steps):
        batch = pack_pairs(rng.sample(examples, 16), tok.pad_token_id, prefix_sharing=True)
        logps, n_tokens = sequence_logps(model, batch)
        (-logps.sum() / n_tokens.sum()).backward()
        opt.step()
        opt.zero_grad()


def smaug_curves(steps: int = 60, work: Path | None = None, sft_steps: int = 100) -> dict[str, list[dict]]:
    """Per-step chosen log-ratio and margin (batch means) for DPO and DPOP (lambda 50)."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    work = Path(work or tempfile.mkdtemp(prefix="smaug-"))
    rows = corrupted_digit_pairs(64)
    model, tok = build_tiny_model(seed=0, **MODEL)
    fit_completions(model, tok, rows, sft_steps)
    model_dir = save_model(model, tok, work / "model")
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"dpo": run("dpo", 0.0, work, steps, model_dir, data),
            "dpop": run("dpop", 50.0, work, steps, model_dir, data)}


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for name, rows in curves.items():
        label = "DPO" if name == "dpo" else "DPOP (lambda=50)"
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["chosen_logratio"] for r in rows], label=label)
        axes[1].plot(steps, [r["margin"] for r in rows], label=label)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_title("chosen log-ratio  log pi(y_w|x) - log pi_ref(y_w|x)")
    axes[1].set_title("margin  rho_w - rho_l")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend()
    fig.suptitle("Corrupted-digit pairs (one early token differs): DPO vs DPOP")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def summary(rows: list[dict], last: int = 10) -> tuple[float, float]:
    tail = rows[-last:]
    return (sum(r["chosen_logratio"] for r in tail) / len(tail), sum(r["margin"] for r in tail) / len(tail))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--out", default="smaug_margin.png")
    args = p.parse_args()
    curves = smaug_curves(args.steps)
    plot(curves, Path(args.out))
    for name, rows in curves.items():
        ratio, margin = summary(rows)
        print(f"{name:5s}: last-10-step mean chosen log-ratio {ratio:+.2f}, margin {margin:+.2f}")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
