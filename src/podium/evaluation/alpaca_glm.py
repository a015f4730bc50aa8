"""AlpacaEval 2's length-controlled win rate with its gamed-baseline rows, as alpaca_eval 0.6.6 computes it.

Written from the semantics of `alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate`
(glm `length_controlled_v1`, Dubois et al. 2024), without pandas, patsy or scikit-learn:

1. Model rows: p = preference − 1 (a legacy 0 is a draw, 0.5); the length feature is
   tanh(std_delta_len) with std_delta_len = (len(output_1) − len(output_2)) / std over the file
   (ddof=1; baseline minus model, so its coefficient comes out negative); the instruction
   difficulty γ is looked up by the row's `index`; `not_gamed_baseline` = 1.
2. `df_gamed.csv` rows (the baseline against itself prompted verbose or concise) enter with
   `not_gamed_baseline` = 0 and sample weight λ/2 = 0.1 (λ = 0.2 spread over the two gamed
   variants); the model rows weigh 1. Rows without a preference are left out of the fit.
3. Design [tanh(std_delta_len), γ, not_gamed_baseline], no intercept; an L1-penalised logistic
   regression on soft labels (each row twice, label 1 with weight w·p and label 0 with w·(1 − p)):
   minimise ‖β‖₁ + C Σ_r w_r [−p_r log σ(x_r·β) − (1 − p_r) log(1 − σ(x_r·β))].
   C is chosen among logspace(−4, 4, 10) by 5-fold grouped cross-validation (scikit-learn's
   GroupKFold without shuffling: rows dealt to the folds in turn, in the order of numpy's argsort
   of equal group sizes, reversed) on the weighted soft-label log loss averaged per fold; the
   fold scores are summed and the first best C refitted on all rows.
4. LC = 100 · mean over every annotation row of σ(β_difficulty · γ_i + β_not_gamed) (length term at
   0); its standard error is the standard error of those per-row predictions (alpaca_eval's).

The L1 problem is solved here to convergence by proximal Newton steps; scikit-learn's liblinear
stops at tol 1e-4, so the two agree to the solver's tolerance, not bit for bit. alpaca_eval looks
γ up by the row label of the first occurrence of each index in df_gamed.csv; that is the same
as by index when the file's first rows hold the indices 0, 1, 2, ... in order (see
`GamedRows.index_order_matches_rows`); podium looks up by index.
"""

from __future__ import annotations

import numpy as np

from podium.errors import DataError
from podium.evaluation.alpaca_files import GamedRows
from podium.evaluation.length_controlled import sigmoid

ALPACA_EVAL_ESTIMATOR = "alpaca_eval-0.6.6-glm"
CS = np.logspace(-4, 4, 10)  # LogisticRegressionCV's default grid (Cs=10)
N_SPLITS = 5
REGULARIZE_TO_BASELINE_LAMBDA = 0.2
FEATURES = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")


def soft_log_loss(X: np.ndarray, p: np.ndarray, weight: np.ndarray, beta: np.ndarray) -> float:
    """Σ_r w_r [log(1 + e^{z_r}) − p_r z_r], z = X β: the weighted soft-label cross-entropy."""
    z = X @ beta
    return float(np.sum(weight * (np.logaddexp(0.0, z) - p * z)))


def fit_l1_logistic(X: np.ndarray, p: np.ndarray, weight: np.ndarray, C: float,
                    max_iter: int = 200, tol: float = 1e-12) -> np.ndarray:
    """argmin_β ‖β‖₁ + C · soft_log_loss(X, p, weight, β) -> β [D]; X [N, D], p and weight [N].

    Proximal Newton: a quadratic model of the smooth part, minimised with the L1 term by cyclic
    coordinate descent (soft-thresholding), then a backtracking line search on the true objective.
    """
    d = X.shape[1]
    beta = np.zeros(d)

    def objective(b: np.ndarray) -> float:
        return float(np.abs(b).sum() + C * soft_log_loss(X, p, weight, b))

    f = objective(beta)
    for _ in range(max_iter):
        q = sigmoid(X @ beta)
        grad = C * X.T @ (weight * (q - p))
        hess = C * (X * (weight * q * (1 - q))[:, None]).T @ X + 1e-12 * np.eye(d)
        step = np.zeros(d)
        for _sweep in range(200):
            moved = 0.0
            for j in range(d):
                c = grad[j] + hess[j] @ step - hess[j, j] * step[j]
                u = beta[j] - c / hess[j, j]
                u = np.sign(u) * max(abs(u) - 1.0 / hess[j, j], 0.0)
                moved = max(moved, abs(u - beta[j] - step[j]))
                step[j] = u - beta[j]
            if moved < 1e-14:
                break
        decrease = grad @ step + np.abs(beta + step).sum() - np.abs(beta).sum()
        t = 1.0
        while objective(beta + t * step) > f + 1e-4 * t * decrease and t > 1e-10:
            t /= 2
        beta = beta + t * step
        f_new = objective(beta)
        if np.max(np.abs(t * step)) < tol or f - f_new < 1e-15 * max(1.0, abs(f)):
            f = f_new
            break
        f = f_new
    return beta


def group_kfold(n: int, n_splits: int = N_SPLITS) -> np.ndarray:
    """Fold of each of n equal-sized groups under scikit-learn's GroupKFold(shuffle=False) [n]."""
    order = np.argsort(np.full(n, 2))[::-1]
    fold = np.empty(n, dtype=int)
    fold[order] = np.arange(n) % n_splits
    return fold


def cv_log_loss(X: np.ndarray, p: np.ndarray, weight: np.ndarray, beta: np.ndarray) -> float:
    """alpaca_eval's scorer: mean over rows of −w [p log q + (1 − p) log(1 − q)], q clipped to [1e-15, 1 − 1e-15]."""
    q = np.clip(sigmoid(X @ beta), 1e-15, 1 - 1e-15)
    return float(-np.mean(weight * (p * np.log(q) + (1 - p) * np.log(1 - q))))


def choose_c(X: np.ndarray, p: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray]:
    """The C of `CS` with the lowest summed cross-validated log loss -> (C, loss per C [len(CS)])."""
    fold = group_kfold(len(p))
    losses = np.zeros(len(CS))
    for k in range(N_SPLITS):
        train, test = fold != k, fold == k
        for c, C in enumerate(CS):
            beta = fit_l1_logistic(X[train], p[train], weight[train], C)
            losses[c] += cv_log_loss(X[test], p[test], weight[test], beta)
    return float(CS[int(np.argmin(losses))]), losses


def alpaca_eval_lc(
    preferences: np.ndarray,
    model_lengths: np.ndarray,
    baseline_lengths: np.ndarray,
    difficulty: np.ndarray,
    gamed: GamedRows,
) -> dict:
    """alpaca_eval 0.6.6's length-controlled win rate (percent) and its GLM weights.

    preferences: [N] P(model ≻ baseline), NaN where the judge gave none; lengths: [N] characters;
    difficulty: [N] γ of each row's instruction; gamed: the rows of `df_gamed.csv`.
    """
    p = np.asarray(preferences, dtype=float)
    n = p.size
    delta = np.asarray(baseline_lengths, dtype=float) - np.asarray(model_lengths, dtype=float)
    std = float(np.std(delta, ddof=1)) if n > 1 else 0.0
    if not std > 0:
        raise DataError("length control with df_gamed: every row has the same length difference, so "
                        "alpaca_eval's std-normalised length feature is undefined")
    model_X = np.stack([np.tanh(delta / std), difficulty, np.ones(n)], axis=1)
    gamed_X = np.stack([np.tanh(gamed.std_delta_len), gamed.instruction_difficulty,
                        gamed.not_gamed_baseline.astype(float)], axis=1)
    gamed_w = np.where(gamed.not_gamed_baseline, 1.0, REGULARIZE_TO_BASELINE_LAMBDA / 2)
    X = np.concatenate([gamed_X, model_X])
    y = np.concatenate([gamed.preference, p])
    w = np.concatenate([gamed_w, np.ones(n)])
    known = ~np.isnan(y)
    X, y, w = X[known], y[known], w[known]
    C, losses = choose_c(X, y, w)
    beta = fit_l1_logistic(X, y, w, C)
    test = model_X.copy()
    test[:, 0] = 0.0
    q = sigmoid(test @ beta)
    return {
        "length_controlled_winrate": float(100 * q.mean()),
        "lc_standard_error": float(100 * q.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "weights": dict(zip(FEATURES, map(float, beta))),
        "C": C,
        "estimator": ALPACA_EVAL_ESTIMATOR,
    }
