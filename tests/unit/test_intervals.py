"""Confidence intervals across seeds: worked examples by hand, and scipy.stats as the oracle."""

import math

import pytest

from podium.errors import PodiumError
from podium.evaluation.intervals import (
    betainc,
    mean_interval,
    paired_difference,
    t_cdf,
    t_quantile,
    welch_difference,
)


def test_t_quantile_closed_forms():
    """df = 1 is Cauchy: t = tan(π(p − ½)); df = 2: F(t) = ½ + t / (2 sqrt(2 + t²)), so
    F(t) = 0.975 gives t / sqrt(2 + t²) = 0.95, t² = 0.9025·2 / 0.0975 = 18.5128..., t = 4.302653."""
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)
    assert t_quantile(0.975, 2) == pytest.approx(math.sqrt(0.9025 * 2 / 0.0975), rel=1e-10)
    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_quantile(0.025, 2) == pytest.approx(-4.302653, abs=1e-6)
    assert t_quantile(0.5, 7) == 0.0


def test_worked_example_three_seeds():
    """Accuracies 0.30, 0.20, 0.40: mean 0.3, s = sqrt((0 + 0.01 + 0.01) / 2) = 0.1,
    sem = 0.1 / sqrt(3) = 0.0577350, half-width = 4.302653 · 0.0577350 = 0.2484138."""
    iv = mean_interval([0.30, 0.20, 0.40])
    assert iv.n == 3 and iv.df == 2
    assert iv.mean == pytest.approx(0.3) and iv.std == pytest.approx(0.1)
    assert iv.half_width == pytest.approx(0.2484138, abs=1e-7)
    assert (iv.low, iv.high) == (pytest.approx(0.0515862, abs=1e-7), pytest.approx(0.5484138, abs=1e-7))
    assert iv.excludes(0.0) and not iv.excludes(0.3)


def test_paired_difference_worked_example():
    """DPOP − SFT per seed: (0.44 − 0.30, 0.25 − 0.14, 0.31 − 0.20) = (0.14, 0.11, 0.11); mean 0.12,
    s = sqrt((0.0004 + 0.0001 + 0.0001) / 2) = sqrt(0.0003) = 0.0173205, half = 4.302653 · 0.0173205 / sqrt(3)."""
    iv = paired_difference([0.44, 0.25, 0.31], [0.30, 0.14, 0.20])
    half = 4.302653 * math.sqrt(0.0003) / math.sqrt(3)
    assert iv.mean == pytest.approx(0.12)
    assert iv.half_width == pytest.approx(half, rel=1e-6)
    assert iv.excludes(0.0)


def test_one_value_has_no_interval_and_bad_input_is_an_error():
    iv = mean_interval([0.5])
    assert iv.mean == 0.5 and iv.low is None and iv.high is None and iv.std is None and not iv.excludes(0.0)
    with pytest.raises(PodiumError, match="no values"):
        mean_interval([])
    with pytest.raises(PodiumError, match="non-finite"):
        mean_interval([0.1, float("nan")])
    with pytest.raises(PodiumError, match="pairs need one value each"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(PodiumError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=95)


def test_equal_values_give_a_zero_width_interval():
    iv = mean_interval([0.25, 0.25, 0.25])
    assert iv.low == iv.high == pytest.approx(0.25) and iv.excludes(0.0)


stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [0.5, 1, 2, 3, 4, 5.5, 9, 29, 120, 5000])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.95, 0.975, 0.995, 0.9995])
def test_t_quantile_matches_scipy(df, p):
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)
    assert t_cdf(stats.t.ppf(p, df), df) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize("a,b,x", [(0.5, 0.5, 0.3), (2.0, 0.5, 0.9), (10.0, 3.0, 0.7), (0.1, 20.0, 0.01), (50.0, 0.5, 0.999)])
def test_betainc_matches_scipy(a, b, x):
    from scipy.special import betainc as scipy_betainc

    assert betainc(a, b, x) == pytest.approx(scipy_betainc(a, b, x), rel=1e-10, abs=1e-14)


def test_intervals_match_scipy():
    xs = [0.412, 0.298, 0.377, 0.351, 0.402]
    ys = [0.301, 0.205, 0.311, 0.280, 0.266]
    iv = mean_interval(xs, confidence=0.9)
    lo, hi = stats.t.interval(0.9, len(xs) - 1, loc=stats.tmean(xs), scale=stats.sem(xs))
    assert (iv.low, iv.high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
    rel = stats.ttest_rel(xs, ys).confidence_interval(0.95)
    iv = paired_difference(xs, ys)
    assert (iv.low, iv.high) == (pytest.approx(rel.low, rel=1e-9), pytest.approx(rel.high, rel=1e-9))
    w = stats.ttest_ind(xs, ys[:4], equal_var=False)
    iv = welch_difference(xs, ys[:4])
    ci = w.confidence_interval(0.95)
    assert iv.df == pytest.approx(w.df, rel=1e-9)
    assert (iv.low, iv.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    """Over prompts: the percentile bootstrap of a mean, against scipy.stats.bootstrap (its own resamples, so equal
    to Monte-Carlo error: with B = 20000 both quantiles move by well under 0.002 on these 400 values)."""
    import random

    import numpy as np
    from scipy import stats

    from podium.evaluation.intervals import bootstrap_interval

    rng = random.Random(3)
    xs = [rng.choice([0.0, 0.5, 0.5, 1.0, 1.0]) for _ in range(400)]
    ours = bootstrap_interval(xs, resamples=20000)
    ref = stats.bootstrap((np.array(xs),), np.mean, method="percentile", n_resamples=20000, random_state=0)
    assert ours.mean == pytest.approx(sum(xs) / 400, abs=1e-12)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.002)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.002)
    assert ours.std == pytest.approx(ref.standard_error, rel=0.03)
    # The normal approximation: the standard error of a mean is s / sqrt(n).
    s = np.std(xs, ddof=1)
    assert ours.std == pytest.approx(s / 20, rel=0.03)


def test_bootstrap_interval_is_deterministic_and_needs_two_values():
    from podium.evaluation.intervals import bootstrap_interval

    xs = [0.0, 1.0, 0.5, 1.0, 0.0, 1.0]
    assert bootstrap_interval(xs) == bootstrap_interval(xs)
    assert bootstrap_interval(xs, seed=1) != bootstrap_interval(xs)
    one = bootstrap_interval([0.7])
    assert (one.mean, one.low, one.high) == (0.7, None, None)
    constant = bootstrap_interval([0.5] * 10)
    assert (constant.low, constant.high) == (0.5, 0.5)
    with pytest.raises(PodiumError, match="non-finite"):
        bootstrap_interval([0.5, float("nan")])
