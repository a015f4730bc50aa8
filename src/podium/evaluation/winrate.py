"""Win rate of a model against a baseline under a judge: raw and length-controlled (AlpacaEval 2).

Input, one entry per prompt i: p_i = P(model ≻ baseline | x_i) from any judge (1/0 for a
hard verdict, 0.5 for a tie), the two response lengths, and optionally instruction ids
or a per-instruction difficulty γ_x.

Raw win rate = 100 · mean_i p_i.

Length-controlled win rate (Dubois et al. 2024, "Length-Controlled AlpacaEval", eq. 2):
a logistic GLM fitted to the soft labels p_i,

    logit q_i = θ + φ · tanh(Δ_i / std(Δ)) + ψ · γ_{x_i},    Δ_i = len(model_i) − len(baseline_i),

θ the model effect (model minus baseline), φ the length effect, γ_x the instruction
difficulty. The LC win rate is the model's predicted win rate with the length term set
to zero: 100 · mean_i σ(θ + ψ · γ_{x_i}).

Instruction difficulty: AlpacaEval estimates γ_x jointly over its whole leaderboard and
ships it; pass such values as `instruction_difficulty` and ψ is fitted. With only
`instruction_ids` (repeated ids, e.g. several samples per instruction), γ_x is fitted as
one ridge-penalised effect per id with ψ = 1 (a random-intercept approximation — with a
single model pair the joint estimate is not identifiable). With neither, γ = 0.
Fitting: L-BFGS on the soft-label cross-entropy; θ is unpenalised, so with equal lengths
and no difficulty the LC win rate equals the raw one. std(Δ) uses ddof=1, like pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from podium.errors import DataError


def win_rate(preferences: Sequence[float]) -> float:
    """Raw win rate in percent: 100 · mean P(model ≻ baseline)."""
    p = np.asarray(preferences, dtype=float)
    if p.size == 0:
        raise DataError("win rate: no preferences")
    return float(100.0 * p.mean())


def preferences_from_scores(model_scores: Sequence[float], baseline_scores: Sequence[float]) -> np.ndarray:
    """P(model ≻ baseline) = σ(s_model − s_baseline) [N] for a scalar judge (reward model, Bradley–Terry)."""
    return expit(np.asarray(model_scores, dtype=float) - np.asarray(baseline_scores, dtype=float))


def length_feature(model_lengths: Sequence[float], baseline_lengths: Sequence[float]) -> np.ndarray:
    """tanh(Δ / std(Δ)) [N]; zeros when every length difference is the same."""
    delta = np.asarray(model_lengths, dtype=float) - np.asarray(baseline_lengths, dtype=float)
    std = delta.std(ddof=1) if delta.size > 1 else 0.0
    return np.tanh(delta / std) if std > 0 else np.zeros_like(delta)


def length_controlled_win_rate(
    preferences: Sequence[float],
    model_lengths: Sequence[float],
    baseline_lengths: Sequence[float],
    *,
    instruction_ids: Sequence | None = None,
    instruction_difficulty: Sequence[float] | Mapping | None = None,
    l2: float = 1e-4,
    instruction_l2: float = 1.0,
) -> dict:
    """Raw and length-controlled win rate (percent) plus the fitted GLM coefficients.

    preferences, model_lengths, baseline_lengths: [N]. `instruction_difficulty` is either
    [N] or a mapping id -> γ (then `instruction_ids` are required). Returns
    `{"win_rate", "lc_win_rate", "theta", "phi", "psi", "n"}`.
    """
    p = np.asarray(preferences, dtype=float)
    n = p.size
    if n == 0:
        raise DataError("win rate: no preferences")
    if np.any((p < 0) | (p > 1)):
        raise DataError("win rate: preferences must be probabilities in [0, 1]")
    if len(model_lengths) != n or len(baseline_lengths) != n:
        raise DataError(f"win rate: {n} preferences but {len(model_lengths)} model and "
                        f"{len(baseline_lengths)} baseline lengths")
    length = length_feature(model_lengths, baseline_lengths)

    gamma = None
    if instruction_difficulty is not None:
        if isinstance(instruction_difficulty, Mapping):
            if instruction_ids is None:
                raise DataError("win rate: a difficulty mapping needs instruction_ids")
            gamma = np.array([float(instruction_difficulty[i]) for i in instruction_ids])
        else:
            gamma = np.asarray(instruction_difficulty, dtype=float)
        if gamma.size != n:
            raise DataError(f"win rate: {gamma.size} difficulties for {n} preferences")

    # Columns: [θ, φ, (ψ | one effect per instruction id)]
    columns = [np.ones(n), length]
    penalty = [0.0, l2]
    per_id = gamma is None and instruction_ids is not None
    if gamma is not None:
        columns.append(gamma)
        penalty.append(l2)
    elif per_id:
        ids, index = np.unique(np.asarray([str(i) for i in instruction_ids]), return_inverse=True)
        onehot = np.zeros((n, len(ids)))
        onehot[np.arange(n), index] = 1.0
        columns.extend(onehot.T)
        penalty.extend([instruction_l2] * len(ids))
    X = np.stack(columns, axis=1)  # [N, D]
    lam = np.asarray(penalty)

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        # Soft-label cross-entropy, written with logaddexp for stability: log(1+e^z) - p z.
        loss = np.sum(np.logaddexp(0.0, z) - p * z) + 0.5 * np.sum(lam * w * w)
        grad = X.T @ (expit(z) - p) + lam * w
        return float(loss), grad

    fit = minimize(loss_and_grad, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    w = fit.x
    no_length = X.copy()
    no_length[:, 1] = 0.0
    lc = float(100.0 * expit(no_length @ w).mean())
    return {
        "win_rate": win_rate(p),
        "lc_win_rate": lc,
        "theta": float(w[0]),
        "phi": float(w[1]),
        "psi": float(w[2]) if gamma is not None else (1.0 if per_id else 0.0),
        "n": int(n),
    }


def rows_to_inputs(rows: list[dict], source: str = "<rows>") -> dict:
    """JSONL rows -> arguments of `length_controlled_win_rate`.

    Each row: `preference` (or `win_prob`) = P(model ≻ baseline); lengths as `model_length` /
    `baseline_length` or, failing that, the characters of `model_response` / `baseline_response`
    (AlpacaEval measures length in characters); optional `instruction_id` (else `prompt`).
    """
    prefs, mlen, blen, ids = [], [], [], []
    for i, row in enumerate(rows, 1):
        p = row.get("preference", row.get("win_prob"))
        if not isinstance(p, (int, float)):
            raise DataError(f"{source}:{i}: field `preference` (P(model > baseline)) is missing or not a number")
        prefs.append(float(p))
        for name, out in (("model", mlen), ("baseline", blen)):
            length = row.get(f"{name}_length")
            if length is None and isinstance(row.get(f"{name}_response"), str):
                length = len(row[f"{name}_response"])
            if not isinstance(length, (int, float)):
                raise DataError(f"{source}:{i}: give `{name}_length` or `{name}_response`")
            out.append(float(length))
        ids.append(row.get("instruction_id", row.get("prompt")))
    use_ids = all(x is not None for x in ids) and len(set(map(str, ids))) < len(ids)
    return {"preferences": prefs, "model_lengths": mlen, "baseline_lengths": blen,
            "instruction_ids": ids if use_ids else None}


def read_rows(path: str) -> list[dict]:
    """JSON objects, one a line (`podium.data.records.read_jsonl`: errors name file:line); none is an error."""
    from podium.data.records import read_jsonl

    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"{path}: no judgments")
    return rows


def winrate_from_file(judgments: str) -> dict:
    """`length_controlled_win_rate` of the judgments in a JSONL file (`podium winrate JUDGMENTS.jsonl`)."""
    return length_controlled_win_rate(**rows_to_inputs(read_rows(judgments), judgments))
