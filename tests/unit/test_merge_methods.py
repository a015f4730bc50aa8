"""Worked examples and properties of the merge methods (pure tensor functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from podium.merging.methods import linear, model_stock, sign_consensus, slerp, task_arithmetic
from podium.merging.sparsify import kth_largest, magnitude, random_drop, top_k_mask


def test_linear_normalised_weights():
    """(1·[1, 2] + 3·[3, 6]) / (1 + 3) = [10, 20] / 4 = [2.5, 5]."""
    out = linear([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])], [1.0, 3.0])
    assert torch.allclose(out, torch.tensor([2.5, 5.0]))
    raw = linear([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])], [1.0, 3.0], normalize=False)
    assert torch.allclose(raw, torch.tensor([10.0, 20.0]))


def test_slerp_orthogonal_midpoint_uses_raw_norms():
    """v0 = [1, 0], v1 = [0, 2]: θ = π/2 from the normalised vectors, t = ½ gives
    sin(π/4)/sin(π/2) = 0.70711 on each raw vector: [0.70711, 1.41421] (lerp would give [0.5, 1])."""
    out = slerp(0.5, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    s = math.sin(math.pi / 4)
    assert torch.allclose(out, torch.tensor([s, 2 * s]), atol=1e-6)


def test_slerp_endpoints_and_lerp_fallback():
    """t=0 gives v0, t=1 gives v1; collinear v1 = 2·v0 (cos = 1 > 0.9995) falls back to lerp:
    t = 0.25 -> 0.75·[1, 0] + 0.25·[2, 0] = [1.25, 0]."""
    v0, v1 = torch.tensor([1.0, 0.0]), torch.tensor([0.3, 0.8])
    assert torch.allclose(slerp(0.0, v0, v1), v0, atol=1e-6)
    assert torch.allclose(slerp(1.0, v0, v1), v1, atol=1e-6)
    assert torch.allclose(slerp(0.25, v0, 2 * v0), torch.tensor([1.25, 0.0]))


def test_task_arithmetic_sum_of_scaled_task_vectors():
    """base 0; task vectors [1, -2, 3] and [1, 1, -1]; sum [2, -1, 2]; λ = 0.5 -> [1, -0.5, 1]."""
    base = torch.zeros(3)
    out = task_arithmetic(base, [torch.tensor([1.0, -2, 3]), torch.tensor([1.0, 1, -1])], [1.0, 1.0], lam=0.5)
    assert torch.allclose(out, torch.tensor([1.0, -0.5, 1.0]))


def test_ties_trim_elect_disjoint_mean():
    """base 0, density 0.5 (keep 2 of 4 by magnitude), weights 1:
    x1 = [1, -2, 3, 0.1] -> trimmed [0, -2, 3, 0];  x2 = [-3, 0.5, 2, 0.2] -> [-3, 0, 2, 0].
    Elected signs (sign of the sum): [-, -, +, + (sum 0 counts as +)].
    Agreeing entries: idx0 x2 only (-3), idx1 x1 only (-2), idx2 both (3, 2), idx3 none.
    Disjoint mean: [-3/1, -2/1, (3+2)/2, 0] = [-3, -2, 2.5, 0]."""
    base = torch.zeros(4)
    x1, x2 = torch.tensor([1.0, -2, 3, 0.1]), torch.tensor([-3.0, 0.5, 2, 0.2])
    out = task_arithmetic(base, [x1, x2], [1.0, 1.0], densities=[0.5, 0.5], sparsify="magnitude",
                          consensus="sum", normalize=True)
    assert torch.allclose(out, torch.tensor([-3.0, -2.0, 2.5, 0.0]))


def test_magnitude_keeps_at_least_one():
    """density 0.1 of 4 entries -> int(0.4) = 0, but one (the largest, -5) is kept."""
    out = magnitude(torch.tensor([1.0, -5.0, 2.0, 0.5]), 0.1)
    assert torch.equal(out, torch.tensor([0.0, -5.0, 0.0, 0.0]))


def test_dare_random_drop_density_and_rescale():
    """DARE keeps ~density of the entries and rescales them by one factor so the L1 norm is unchanged
    (≈ 1/density in expectation); the same seed gives the same mask, another seed another one."""
    delta = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    out = random_drop(delta, 0.3, rng=np.random.default_rng(1))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.01
    assert torch.allclose(out.abs().sum(), delta.abs().sum(), rtol=1e-4)
    factor = out[kept] / delta[kept]
    assert torch.allclose(factor, factor[0].expand_as(factor), rtol=1e-5)
    assert abs(factor[0].item() - 1 / 0.3) < 0.05
    again = random_drop(delta, 0.3, rng=np.random.default_rng(1))
    other = random_drop(delta, 0.3, rng=np.random.default_rng(2))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_dare_ties_is_task_arithmetic_plus_sparsifier():
    """density 1 turns DARE-TIES into plain TIES sign election without trimming."""
    base = torch.zeros(4)
    xs = [torch.tensor([1.0, -2, 3, 0.1]), torch.tensor([-3.0, 0.5, 2, 0.2])]
    dare = task_arithmetic(base, xs, [1.0, 1.0], densities=[1.0, 1.0], sparsify="random", consensus="sum",
                           rescale=True, rng=np.random.default_rng(0))
    ties = task_arithmetic(base, xs, [1.0, 1.0], densities=[1.0, 1.0], sparsify="magnitude", consensus="sum")
    assert torch.equal(dare, ties)
    # elected [-, -, +, +]: idx0 -3, idx1 -2, idx2 3+2, idx3 0.1+0.2 (no normalisation)
    assert torch.allclose(dare, torch.tensor([-3.0, -2.0, 5.0, 0.3]))


def test_model_stock_two_orthogonal_task_vectors_average_halfway():
    """base 0, task vectors [1, 0] and [0, 1]: cos θ = 0 -> t = 2·0/(1+0) = 0 -> the base.
    With [1, 0] and [1, 0.0001]: cos ≈ 1 -> t ≈ 2/2 = 1 -> the average ≈ [1, 0.00005]."""
    base = torch.zeros(2)
    assert torch.allclose(model_stock(base, [torch.tensor([1.0, 0]), torch.tensor([0.0, 1])]), base)
    out = model_stock(base, [torch.tensor([1.0, 0]), torch.tensor([1.0, 1e-4])])
    assert torch.allclose(out, torch.tensor([1.0, 5e-5]), atol=1e-6)


# --- the fast paths against what they replace -------------------------------------------------------


def _argsort_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """mergekit's trim: the first k of torch.argsort(|delta|, descending=True)."""
    mask = torch.zeros(w.numel(), dtype=torch.bool)
    mask[torch.argsort(w, descending=True)[:k]] = True
    return mask


@pytest.mark.parametrize("case", ["float32", "integers", "bfloat16", "zeros", "large-float32"])
def test_top_k_mask_picks_exactly_what_argsort_picks(case):
    """Including magnitudes tied at the cut, where the unstable sort's choice must be reproduced."""
    g = torch.Generator().manual_seed(0)
    n = 300_000 if case == "large-float32" else 20_000
    w = {
        "float32": lambda: torch.randn(n, generator=g),
        "large-float32": lambda: torch.randn(n, generator=g),
        "integers": lambda: torch.randint(-6, 7, (n,), generator=g).float(),  # many ties at the cut
        "bfloat16": lambda: (torch.randn(n, generator=g) * 0.02).bfloat16().float(),
        "zeros": lambda: torch.randn(n, generator=g) * (torch.rand(n, generator=g) < 0.3),  # cut falls in the zeros
    }[case]().abs()
    for density in (0.1, 0.5, 0.9, 1e-5):
        k = max(1, int(density * n))
        got = torch.from_numpy(top_k_mask(w.numpy(), k))
        want = _argsort_mask(w, k)
        if case == "zeros" and int((w > 0).sum()) < k:
            # the cut is at 0: kept zeros change nothing, so only the nonzero kept set must agree
            assert torch.equal(got & (w > 0), want & (w > 0))
        else:
            assert torch.equal(got, want), (case, density)


def test_kth_largest_is_exact_on_skewed_and_tied_data():
    """Floyd-Rivest's sample bracket must never change the answer, whatever the distribution."""
    rng = np.random.default_rng(0)
    cases = [rng.standard_normal(500_000).astype(np.float32),
             np.abs(rng.standard_cauchy(500_000)).astype(np.float32),
             rng.integers(0, 3, 500_000).astype(np.float32),
             np.concatenate([np.zeros(499_990), np.arange(10)]).astype(np.float32)]
    for w in cases:
        ordered = np.sort(w)
        for k in (1, 7, 1000, 250_000, 499_999, 500_000):
            assert kth_largest(w, k) == ordered[-k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_sign_consensus_equals_the_stacked_mask_and_sum(dtype, k):
    """TIES elect + disjoint merge, computed the way mergekit writes it (stack, sign mask, sum over dim 0),
    equals podium's streaming form bit for bit, zeros and exactly cancelling entries included."""
    g = torch.Generator().manual_seed(k)
    deltas = [torch.randn(5000, generator=g).to(dtype) for _ in range(k)]
    deltas[0][:500] = 0
    deltas[1][500:1000] = -deltas[0][500:1000]  # sums of exactly 0 elect +
    for d in deltas[2:]:
        d[500:1000] = 0
    weights = torch.tensor([0.5, 0.3, 0.2, 0.7][:k], dtype=dtype)
    weighted = [d * w for d, w in zip(deltas, weights)]
    stacked = torch.stack(weighted)
    elected = (stacked.sum(dim=0) >= 0).to(dtype) * 2 - 1
    mask = stacked.sign() == elected
    want_mixed = (stacked * mask).sum(dim=0)
    want_div = (weights.reshape(-1, 1) * mask).sum(dim=0)
    want_div[want_div == 0] = 1
    mixed, divisor = sign_consensus([w.clone() for w in weighted], weights)
    assert mixed.dtype == divisor.dtype == dtype
    assert torch.equal(mixed, want_mixed) and torch.equal(divisor, want_div)
