"""Self-play's held-out measurement: each iteration against the baseline and against the one before, paired by prompt.

Every policy pi_0 (the stage's starting model), pi_1, ..., pi_T answers the same held-out prompts
with the same sampling seed (greedy by default), and the stage's evaluation judge gives, per prompt i,

    a_i(t) = P(pi_t's answer ≻ the baseline's answer),   v_i(t) = P(pi_t's answer ≻ pi_{t-1}'s answer).

For iteration t this module reports, each with a 95 % percentile-bootstrap interval over the prompts
(podium.evaluation.intervals.bootstrap_interval):

- `win_rate`             mean_i a_i(t)                         (against the baseline, as before);
- `win_rate_vs_previous` mean_i v_i(t)                         (0.5: no change);
- `gain`                 mean_i [a_i(t) − a_i(t−1)]            the paired difference of the win rates.

The paired difference is what can see one iteration's gain: both win rates are judged on the same
prompts against the same baseline answers, so the prompt-to-prompt spread (most of a win rate's
standard error, 0.5/sqrt(n) at worst) cancels, and what is left comes only from the prompts whose
answer changed between the iterations. With a verifier judge, a_i ∈ {0, ½, 1}, so
gain = (accuracy(t) − accuracy(t−1)) / 2 and its standard error is sqrt((q − (2·gain)²) / (4n)) for
q the share of prompts whose correctness changed (`expected_standard_error`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from podium.evaluation.intervals import CONFIDENCE, bootstrap_interval

BOOTSTRAP_SEED = 0  # the same resamples on every run: an interval is a function of the judged values
DISCORDANCE_EXAMPLES = (0.05, 0.1, 0.2)  # shares of prompts whose judged answer changes in one iteration


def interval_metrics(name: str, values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """`{name, name_low, name_high}`: the mean of the per-prompt `values` and its bootstrap interval."""
    iv = bootstrap_interval(values, confidence, seed=BOOTSTRAP_SEED)
    out = {name: iv.mean}
    if iv.low is not None:
        out.update({f"{name}_low": iv.low, f"{name}_high": iv.high})
    return out


def iteration_metrics(t: int, vs_baseline: Sequence[float | None], vs_previous: Sequence[float | None] | None,
                      previous_vs_baseline: Sequence[float | None] | None,
                      confidence: float = CONFIDENCE) -> dict[str, float]:
    """`iter{t}/…` metrics of one policy from its per-prompt judged probabilities (None: the judge could not
    compare the answers on that prompt). `vs_previous`/`previous_vs_baseline` are None for t = 0 (pi_0)."""
    key = f"iter{t}/"
    base = [p for p in vs_baseline if p is not None]
    out: dict[str, float] = {f"{key}eval_prompts": len(base)}
    if base:
        out.update(interval_metrics(f"{key}win_rate", base, confidence))
    else:
        out[f"{key}win_rate"] = math.nan
    if vs_previous is not None:
        prev = [p for p in vs_previous if p is not None]
        if prev:
            out.update(interval_metrics(f"{key}win_rate_vs_previous", prev, confidence))
    if previous_vs_baseline is not None:
        diffs = [a - b for a, b in zip(vs_baseline, previous_vs_baseline, strict=True) if a is not None and b is not None]
        if diffs:
            out.update(interval_metrics(f"{key}gain", diffs, confidence))
    return out


def expected_standard_error(n: int) -> dict[str, float]:
    """Standard errors an evaluation on `n` held-out prompts can expect before anything runs.

    `win_rate`: the worst case 0.5/sqrt(n) (a fair coin per prompt; ties and a lopsided rate give less).
    `gain@q`: a paired gain near 0 when a share q of the prompts change their judged outcome between two
    iterations (verifier judge: per-prompt differences ±½ on those prompts, 0 elsewhere): sqrt(q / (4n)).
    """
    out = {"win_rate": 0.5 / math.sqrt(n)}
    out.update({f"gain@{q:g}": math.sqrt(q / (4 * n)) for q in DISCORDANCE_EXAMPLES})
    return out


def standard_error_note(n: int) -> str:
    """The `--dry-run` line of a self-play stage: what its `eval_count` can resolve."""
    se = expected_standard_error(n)
    gains = ", ".join(f"{se[f'gain@{q:g}']:.4f} at q = {q:g}" for q in DISCORDANCE_EXAMPLES)
    return (f"eval_count {n}: win rate standard error <= {se['win_rate']:.4f} (95 % interval ± {1.96 * se['win_rate']:.4f}); "
            f"a paired per-iteration gain's standard error {gains} (q: share of prompts whose judged answer changes "
            f"between iterations); a gain is resolved when it is about 2 standard errors")
