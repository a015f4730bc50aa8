"""Length-controlled win rate without AlpacaEval's gamed-baseline data: a GLM regularised toward the baseline.

The GLM is AlpacaEval 2's (Dubois et al. 2024, "Length-Controlled AlpacaEval", eq. 2):

    logit P(model ≻ baseline | x_i) = θ + φ · tanh(Δ_i / S) + ψ · γ_i,    Δ_i = len(model_i) − len(baseline_i),

θ the model effect, φ the judge's length effect, γ_i the instruction difficulty (when known).
The LC win rate is the model's predicted win rate with the length term at zero:
100 · mean_i σ(θ + ψ γ_i).

Why regularise. When Δ has one sign on (nearly) every item — a model that is always longer —
θ and the length term are collinear: the data fix θ + φ·tanh(Δ/S) but not the split, and an
unregularised fit runs off (LC of 0 for a model as good as the baseline). AlpacaEval breaks the
tie with rows of its baseline judged against itself prompted verbose/concise (`df_gamed.csv`,
see `alpaca_glm.py`), which pin φ at a known quality difference of zero. Offline, podium puts the
same knowledge in as priors and takes the posterior mode (MAP):

- φ ~ N(1.5, 0.4²): the length effect AlpacaEval 2's default judge (weighted_alpaca_eval_gpt4_turbo,
  baseline gpt4_1106_preview) shows — the length coefficient of alpaca_eval 0.6.6's published GLM
  weights has mean 1.51 and sd 0.39 over its 199 models (the baseline's own row left out), sign
  turned to model minus baseline.
- θ ~ N(0, 1.5²): the model is the baseline until the data say otherwise ("toward the baseline").
- ψ ~ N(1, 1) when a difficulty γ is given (γ is on the logit scale, so ψ = 1 is the neutral value).
- With repeated instruction ids (several samples per instruction) and no γ, one effect per id,
  each ~ N(0, 1): a random-intercept approximation of the difficulty.

S is the standard deviation of the baseline's lengths (ddof=1): a property of the baseline alone,
so the same length difference means the same to every model scored against it, and an offset
that every item shares is not divided away (AlpacaEval's std(Δ) makes tanh saturate for a model
that is always 200–600 characters longer, the collinear case above).
The prior on φ encodes an assumption about the judge: for another judge, prefer its own gamed
rows (`--df-gamed`). Fitting: Newton's method on the penalised soft-label cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from podium.errors import DataError

REGULARISED_ESTIMATOR = "podium-regularised-glm"
LENGTH_PRIOR = (1.5, 0.4)  # φ: mean, sd
MODEL_PRIOR_SD = 1.5  # θ ~ N(0, sd²)
DIFFICULTY_PRIOR = (1.0, 1.0)  # ψ: mean, sd
INSTRUCTION_PRIOR_SD = 1.0  # per-id effects ~ N(0, sd²)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) without overflow for large |z|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=float)))


def length_scale(model_lengths: np.ndarray, baseline_lengths: np.ndarray) -> float:
    """S: sd of the baseline's lengths; the root mean square of Δ if those are all equal; 0 if Δ is 0 too."""
    s = float(np.std(baseline_lengths, ddof=1)) if baseline_lengths.size > 1 else 0.0
    if s > 0:
        return s
    return float(np.sqrt(np.mean((model_lengths - baseline_lengths) ** 2)))


def length_feature(model_lengths: Sequence[float], baseline_lengths: Sequence[float]) -> np.ndarray:
    """tanh(Δ / S) [N] (`length_scale`); zeros when every length difference is 0."""
    m, b = np.asarray(model_lengths, dtype=float), np.asarray(baseline_lengths, dtype=float)
    s = length_scale(m, b)
    return np.tanh((m - b) / s) if s > 0 else np.zeros_like(m)


def fit_map(X: np.ndarray, p: np.ndarray, prior_mean: np.ndarray, prior_sd: np.ndarray,
            max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Posterior mode of a logistic GLM with soft labels and independent Gaussian priors -> w [D].

    X: [N, D] design; p: [N] targets in [0, 1]; prior_mean, prior_sd: [D].
    Minimises Σ_i [log(1 + e^{z_i}) − p_i z_i] + Σ_d (w_d − m_d)² / (2 s_d²), z = X w, by Newton's
    method (the objective is strictly convex, so each step with halving converges).
    """
    prec = 1.0 / np.asarray(prior_sd, dtype=float) ** 2
    mean = np.asarray(prior_mean, dtype=float)

    def objective(w: np.ndarray) -> float:
        z = X @ w
        return float(np.sum(np.logaddexp(0.0, z) - p * z) + 0.5 * np.sum(prec * (w - mean) ** 2))

    w = mean.copy()
    f = objective(w)
    for _ in range(max_iter):
        q = sigmoid(X @ w)
        grad = X.T @ (q - p) + prec * (w - mean)
        hess = (X * (q * (1 - q))[:, None]).T @ X + np.diag(prec)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while objective(w - t * step) > f + 1e-12 * max(1.0, abs(f)) and t > 1e-8:
            t /= 2
        w = w - t * step
        f = objective(w)
        if np.max(np.abs(t * step)) < tol:
            break
    return w


def regularised_lc(
    preferences: Sequence[float],
    model_lengths: Sequence[float],
    baseline_lengths: Sequence[float],
    *,
    difficulty: Sequence[float] | None = None,
    instruction_ids: Sequence | None = None,
    length_prior: tuple[float, float] = LENGTH_PRIOR,
    model_prior_sd: float = MODEL_PRIOR_SD,
    difficulty_prior: tuple[float, float] = DIFFICULTY_PRIOR,
    instruction_prior_sd: float = INSTRUCTION_PRIOR_SD,
) -> dict:
    """Length-controlled win rate (percent) of the regularised GLM, with its coefficients.

    preferences: [N] P(model ≻ baseline), NaN for rows without a preference (left out of the fit,
    kept in the prediction, as alpaca_eval does); lengths [N] in characters; difficulty: [N] γ_i.
    Returns `{"length_controlled_winrate", "lc_standard_error", "lc_posterior_sd", "theta", "phi", "psi",
    "length_scale", "estimator"}`. `lc_standard_error` is AlpacaEval's: the standard error of the per-row
    predictions (0 without a difficulty); `lc_posterior_sd` is the uncertainty of the LC win rate itself
    (points; Laplace approximation of the posterior, carried through by the delta method).
    """
    p = np.asarray(preferences, dtype=float)
    m, b = np.asarray(model_lengths, dtype=float), np.asarray(baseline_lengths, dtype=float)
    n = p.size
    if n == 0 or m.size != n or b.size != n:
        raise DataError(f"length control: {n} preferences, {m.size} model and {b.size} baseline lengths")
    columns, means, sds = [np.ones(n), length_feature(m, b)], [0.0, length_prior[0]], [model_prior_sd, length_prior[1]]
    if difficulty is not None:
        gamma = np.asarray(difficulty, dtype=float)
        if gamma.size != n:
            raise DataError(f"length control: {gamma.size} difficulties for {n} preferences")
        columns.append(gamma)
        means.append(difficulty_prior[0])
        sds.append(difficulty_prior[1])
    elif instruction_ids is not None:
        _, which = np.unique(np.asarray([str(i) for i in instruction_ids]), return_inverse=True)
        onehot = np.eye(which.max() + 1)[which]
        columns.extend(onehot.T)
        means.extend([0.0] * onehot.shape[1])
        sds.extend([instruction_prior_sd] * onehot.shape[1])
    X = np.stack(columns, axis=1)  # [N, D]
    known = ~np.isnan(p)
    w = fit_map(X[known], p[known], np.asarray(means), np.asarray(sds))
    neutral = X.copy()
    neutral[:, 1] = 0.0  # no length difference
    q = sigmoid(neutral @ w)
    # Laplace approximation: posterior covariance H⁻¹ at the mode, carried to LC by the delta method.
    q_fit = sigmoid(X[known] @ w)
    hess = (X[known] * (q_fit * (1 - q_fit))[:, None]).T @ X[known] + np.diag(1.0 / np.asarray(sds) ** 2)
    grad = 100 * (neutral * (q * (1 - q))[:, None]).mean(axis=0)
    return {
        "length_controlled_winrate": float(100 * q.mean()),
        "lc_standard_error": float(100 * q.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "lc_posterior_sd": float(np.sqrt(grad @ np.linalg.solve(hess, grad))),
        "theta": float(w[0]),
        "phi": float(w[1]),
        "psi": float(w[2]) if difficulty is not None else None,
        "length_scale": length_scale(m, b),
        "estimator": REGULARISED_ESTIMATOR,
    }
