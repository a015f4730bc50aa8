"""Synthetic AlpacaEval annotation sets with a known length-neutral truth (a test helper).

805 instructions, as AlpacaEval 2 has. A simulated judge prefers the model's answer with

    P(model ≻ baseline | i) = σ(θ + γ_i + ε_i + b · tanh(Δ_i / s)),   Δ_i = len(model_i) − len(baseline_i),

θ the model's quality relative to the baseline, γ_i ~ N(0, 1) the instruction's difficulty
(shared by every model), ε_i ~ N(0, 0.7²) the judge's item noise, and a length bias of b = 1.5
per tanh(Δ / 625 characters). The numbers are taken from AlpacaEval 2 itself: b is the mean
length coefficient of alpaca_eval 0.6.6's published GLM weights for its default judge (1.51 over
199 models), 625 the median std of Δ between the baseline gpt4_1106_preview and six models'
published outputs (Llama-3-8B-Instruct, Mistral-7B-Instruct-v0.2, gpt-4o, claude-3-opus and two
SimPO models: 568 to 1328; the scale that coefficient is measured on), and the baseline's lengths are lognormal with that
baseline's mean and sd (2049 and 1189 characters). Preferences are the judge's probabilities
(AlpacaEval 2's weighted judge), written as AlpacaEval does: 1 + P.

The length-neutral truth is what the same judge would say with the length term at zero:
100 · mean_i σ(θ + γ_i + ε_i). `df_gamed` holds the baseline judged against itself prompted
verbose and concise (θ = 0, same judge), laid out as AlpacaEval's df_gamed.csv.

    .venv/bin/python tests/lc_synthetic.py [--seeds 0,1,2,3] [--no-oracle] [--bias 1.5] [--scale 625]

prints, for the four cases of issue 15, the truth, podium's regularised estimate, podium with
df_gamed and alpaca_eval 0.6.6's own `get_length_controlled_winrate` (run in its own venv, see
`alpaca_oracle.py`).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_INSTRUCTIONS = 805
LENGTH_BIAS = 1.5
LENGTH_SCALE = 625.0
NOISE_SD = 0.7
BASELINE_MEAN, BASELINE_SD = 2049.0, 1189.0

# case -> (θ, how the model's lengths relate to the baseline's)
CASES = {
    "equal_longer": 0.0,  # same quality, always 200-600 characters longer
    "better_equal": 1.0,  # better, lengths like the baseline's (no offset)
    "better_longer": 1.0,  # better and always 200-600 longer
    "worse_much_longer": -1.0,  # worse, always 800-2000 longer
}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Synthetic:
    rows: list[dict]  # AlpacaEval annotation rows
    truth: float  # length-neutral win rate, percent
    df_gamed_csv: str  # AlpacaEval's df_gamed.csv layout
    difficulty: dict[int, float]  # index -> γ
    raw: float  # the judge's raw win rate, percent

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"annotations": folder / "annotations.json", "df_gamed": folder / "df_gamed.csv",
                 "instruction_difficulty": folder / "instruction_difficulty.csv"}
        paths["annotations"].write_text(json.dumps(self.rows))
        paths["df_gamed"].write_text(self.df_gamed_csv)
        paths["instruction_difficulty"].write_text(
            "index,instruction_difficulty\n" + "".join(f"{i},{g!r}\n" for i, g in self.difficulty.items()))
        return paths


def text_of(length: int, seed: int) -> str:
    words = "the model answers the question with care and detail "
    reps = length // len(words) + 1
    return (f"[{seed}] " + words * reps)[:length]


def judge(theta, gamma, eps, delta, bias=LENGTH_BIAS, scale=LENGTH_SCALE):
    return sigmoid(theta + gamma + eps + bias * np.tanh(delta / scale))


def model_lengths(case: str, base: np.ndarray, rng) -> np.ndarray:
    n = base.size
    if case in ("equal_longer", "better_longer"):
        return base + rng.uniform(200, 600, n)
    if case == "better_equal":
        return base * np.exp(rng.normal(-0.35**2 / 2, 0.35, n))
    if case == "worse_much_longer":
        return base + rng.uniform(800, 2000, n)
    raise ValueError(case)


def make(case: str, seed: int, n: int = N_INSTRUCTIONS, bias: float = LENGTH_BIAS,
         scale: float = LENGTH_SCALE) -> Synthetic:
    """One annotation set for `case` (see CASES) with its truth and gamed-baseline rows."""
    rng = np.random.default_rng([seed, list(CASES).index(case)])
    log_sd = np.sqrt(np.log(1 + (BASELINE_SD / BASELINE_MEAN) ** 2))
    base = np.round(np.exp(rng.normal(np.log(BASELINE_MEAN) - log_sd**2 / 2, log_sd, n))).astype(int)
    gamma = rng.normal(0, 1, n)
    eps = rng.normal(0, NOISE_SD, n)
    theta = CASES[case]
    model = np.maximum(np.round(model_lengths(case, base, rng)).astype(int), 1)
    p = judge(theta, gamma, eps, model - base, bias, scale)
    rows = [{"instruction": f"instruction {i}", "output_1": text_of(int(base[i]), i),
             "output_2": text_of(int(model[i]), i + 10_000), "preference": float(1 + p[i]), "index": i,
             "generator_1": "baseline", "generator_2": f"model_{case}", "annotator": "synthetic_judge"}
            for i in range(n)]

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["model", "index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"])
    for variant, (mu, sd) in {"verbose": (0.16, 0.2), "concise": (-0.6, 0.3)}.items():
        gamed = np.maximum(np.round(base * np.exp(rng.normal(mu, sd, n))).astype(int), 1)
        pg = judge(0.0, gamma, rng.normal(0, NOISE_SD, n), gamed - base, bias, scale)
        d = (base - gamed).astype(float)
        sdl = d / d.std(ddof=1)
        for i in range(n):
            w.writerow([f"baseline_{variant}", i, repr(float(pg[i])), repr(float(sdl[i])), repr(float(gamma[i])), False])
    return Synthetic(rows=rows, truth=float(100 * sigmoid(theta + gamma + eps).mean()), df_gamed_csv=out.getvalue(),
                     difficulty={i: float(gamma[i]) for i in range(n)}, raw=float(100 * p.mean()))


def table(seeds: list[int], folder: Path, oracle: bool = True, bias: float = LENGTH_BIAS,
          scale: float = LENGTH_SCALE) -> list[dict]:
    """One row per case and seed: truth, raw, podium regularised, podium with df_gamed, alpaca_eval 0.6.6."""
    from podium.evaluation.winrate import winrate_report

    out, jobs = [], []
    for case in CASES:
        for seed in seeds:
            synth = make(case, seed, bias=bias, scale=scale)
            paths = synth.write(folder / f"{case}-{seed}")
            out.append({
                "case": case, "seed": seed, "truth": synth.truth, "raw": synth.raw,
                "podium_regularised": winrate_report(paths["annotations"])["length_controlled_winrate"],
                "podium_df_gamed": winrate_report(paths["annotations"], paths["df_gamed"])["length_controlled_winrate"],
            })
            jobs.append({"annotations": str(paths["annotations"]), "df_gamed": str(paths["df_gamed"])})
    if oracle:
        try:
            from tests.alpaca_oracle import run_alpaca_eval
        except ImportError:  # run as a script: tests/ is on sys.path
            from alpaca_oracle import run_alpaca_eval

        for row, res in zip(out, run_alpaca_eval(jobs)):
            row["alpaca_eval"] = res["length_controlled_winrate"]
    return out


if __name__ == "__main__":
    import argparse
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--bias", type=float, default=LENGTH_BIAS, help="the judge's length bias b")
    ap.add_argument("--scale", type=float, default=LENGTH_SCALE, help="the judge's length scale s (characters)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = table([int(s) for s in args.seeds.split(",")], Path(tmp), oracle=not args.no_oracle,
                     bias=args.bias, scale=args.scale)
    cols = ["truth", "raw", "podium_regularised", "podium_df_gamed", "alpaca_eval"]
    print(f"| case | seed | {' | '.join(cols)} |")
    print("|---|---|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['case']} | {r['seed']} | " + " | ".join(f"{r[c]:.1f}" if c in r else "-" for c in cols) + " |")
