"""Confidence intervals across seeds: means, paired and unpaired differences (Student t).

A claim that a method helps is a mean over seeds with a 95 % confidence interval (DESIGN.md,
"Evidence"). For n values x_1..x_n (one per seed):

    mean = Σx/n,   s = sqrt(Σ(x − mean)² / (n − 1)),   half-width = t_{(1+c)/2, n−1} · s / sqrt(n)

A paired difference (the same seeds run two ways, e.g. eval_dpop − eval_sft) is the interval of
the per-seed differences a_i − b_i. Two independent samples get Welch's interval
(Welch 1947): standard error sqrt(s_a²/n_a + s_b²/n_b) and Welch–Satterthwaite degrees of freedom.

The Student t quantile is computed here from the regularised incomplete beta function
(P(|T| > t) = I_{ν/(ν+t²)}(ν/2, 1/2); Abramowitz & Stegun 26.7.1 and 26.5.8, continued fraction
as in Numerical Recipes §6.4), so podium needs no scipy for it; the tests check it against scipy.

Within one run, over the prompts of an evaluation (e.g. a self-play iteration's win rate, or its
paired gain over the previous iteration on the same prompts), `bootstrap_interval` gives the
percentile bootstrap (Efron & Tibshirani 1993, §13.3): resample the n per-prompt values with
replacement B times, and take the (1 − c)/2 and (1 + c)/2 quantiles of the B resampled means.
Pure functions on floats; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from podium.errors import PodiumError

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """Mean of n values with a two-sided confidence interval; `low`/`high` are None when n < 2."""

    n: int
    mean: float
    std: float | None  # sample standard deviation (n − 1); None when n < 2
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE
    df: float | None = None  # degrees of freedom of the t quantile used

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else (self.high - self.low) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """Whether the interval lies strictly on one side of `value` (False when it is undefined)."""
        return self.low is not None and (self.low > value or self.high < value)

    def as_dict(self) -> dict:
        return {**asdict(self), "half_width": self.half_width}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise PodiumError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) beyond.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom."""
    if df <= 0:
        raise PodiumError(f"Student t needs df > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (e.g. p = 0.975, df = 2 -> 4.3027), by bisection on `t_cdf`."""
    if not 0.0 < p < 1.0:
        raise PodiumError(f"quantile level must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def _values(values: Sequence[float], what: str) -> list[float]:
    xs = [float(v) for v in values]
    if not xs:
        raise PodiumError(f"{what}: no values")
    bad = [v for v in xs if not math.isfinite(v)]
    if bad:
        raise PodiumError(f"{what}: non-finite value {bad[0]}")
    return xs


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise PodiumError(f"confidence must be in (0, 1), got {confidence}")


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval of `values` (one per seed). [n] -> Interval; n = 1 gives no interval."""
    _check_confidence(confidence)
    xs = _values(values, "mean_interval")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return Interval(n, mean, None, None, None, confidence)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half, confidence, float(n - 1))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Interval of the mean per-seed difference a_i − b_i (the same seeds run two ways). [n], [n] -> Interval."""
    if len(a) != len(b):
        raise PodiumError(f"paired_difference: {len(a)} values against {len(b)}; pairs need one value each")
    return mean_interval([x - y for x, y in zip(_values(a, "paired a"), _values(b, "paired b"))], confidence)


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Welch's interval for mean(a) − mean(b) from independent samples (unequal variances).

    `std` of the result is the standard error of the difference; `n` is n_a + n_b.
    """
    _check_confidence(confidence)
    xa, xb = _values(a, "welch a"), _values(b, "welch b")
    ia, ib = mean_interval(xa, confidence), mean_interval(xb, confidence)
    diff = ia.mean - ib.mean
    if ia.std is None or ib.std is None:
        return Interval(len(xa) + len(xb), diff, None, None, None, confidence)
    va, vb = ia.std**2 / ia.n, ib.std**2 / ib.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(ia.n + ib.n, diff, 0.0, diff, diff, confidence, float(ia.n + ib.n - 2))
    df = (va + vb) ** 2 / (va**2 / (ia.n - 1) + vb**2 / (ib.n - 1))
    half = t_quantile((1.0 + confidence) / 2.0, df) * se
    return Interval(ia.n + ib.n, diff, se, diff - half, diff + half, confidence, df)


def bootstrap_interval(values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> Interval:
    """Mean of `values` (one per prompt) with its percentile-bootstrap interval. [n] -> Interval.

    `std` is the bootstrap standard error (the std of the resampled means); `df` is None. The
    resamples are drawn from `numpy.random.default_rng(seed)`, so the same values give the same
    interval. n = 1 gives no interval. For a paired difference, pass the per-prompt differences.
    """
    _check_confidence(confidence)
    if resamples < 2:
        raise PodiumError(f"bootstrap_interval: resamples must be >= 2, got {resamples}")
    xs = np.asarray(_values(values, "bootstrap_interval"), dtype=np.float64)
    n = len(xs)
    mean = math.fsum(xs.tolist()) / n
    if n < 2:
        return Interval(n, mean, None, None, None, confidence)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 4_000_000 // n)  # bounds the index matrix to ~32 MB
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = xs[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return Interval(n, mean, float(means.std(ddof=1)), float(low), float(high), confidence)
