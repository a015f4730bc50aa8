"""Merge methods as pure tensor functions (the table that names them is `registry.py`).

Every function takes the input tensors of one weight (all the same shape) and returns the merged
tensor. Semantics and rounding follow mergekit 0.1.5, so configs written for it give the same
numbers (to 1e-6; DARE's random drop excepted, see `sparsify.random_drop`).
"""

from __future__ import annotations

import numpy as np
import torch

from podium.merging.sparsify import magnitude, random_drop


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32 (as mergekit does)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def linear(tensors: list[torch.Tensor], weights: list[float], normalize: bool = True) -> torch.Tensor:
    """Weighted average sum_i w_i x_i / sum_i w_i (Wortsman et al. 2022, "Model soups", arXiv:2203.05482).

    tensors: k tensors of one shape. Computed in float32, returned in the first input's dtype.
    """
    dtype = work_dtype(tensors[0])
    # weights as a float32 tensor (not Python doubles) so low-precision outputs round like mergekit's
    w = torch.tensor(weights, dtype=dtype)
    out = torch.zeros_like(tensors[0], dtype=dtype)
    for x, wi in zip(tensors, w):
        out.addcmul_(x, wi)
    if normalize:
        out.div_(w.sum())
    return out.to(tensors[0].dtype)


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995,
          eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation from v0 (t=0, the base) to v1 (t=1) (Shoemake 1985).

    The angle comes from the normalised flattened tensors and the coefficients are applied to
    the raw ones, so norms interpolate too; when |cos θ| > dot_threshold it falls back to lerp.
    v0, v1: same shape. Returns v0's dtype. Works in float32 (float64 stays float64).
    """
    dtype = work_dtype(v0)
    a, b = v0.reshape(-1).to(dtype), v1.reshape(-1).to(dtype)
    if a.numel() == 0:
        return v0.clone()
    norm_a = torch.linalg.vector_norm(a)
    norm_b = torch.linalg.vector_norm(b)
    norm_a = norm_a if norm_a > eps else torch.ones_like(norm_a)
    norm_b = norm_b if norm_b > eps else torch.ones_like(norm_b)
    # normalise before multiplying (no overflow), as mergekit does; in place where it changes no bit
    x = a / norm_a
    dot = x.mul_(b / norm_b).sum().clamp(-1, 1)
    del x
    t = torch.tensor(t, dtype=dtype)  # 1 - t in working precision, as mergekit computes it
    if dot.abs() > dot_threshold:
        coef_a, coef_b = 1 - t, t
    else:
        theta = torch.acos(dot)
        sin_theta = torch.sin(theta)
        coef_a = torch.sin((1 - t) * theta) / sin_theta
        coef_b = torch.sin(t * theta) / sin_theta
    out = torch.mul(a, coef_a).add_(torch.mul(b, coef_b))
    return out.reshape(v0.shape).to(v0.dtype)


def task_arithmetic(
    base: torch.Tensor,
    others: list[torch.Tensor],
    weights: list[float],
    densities: list[float] | None = None,
    sparsify: str | None = None,
    consensus: str | None = None,
    normalize: bool = False,
    rescale: bool = False,
    lam: float = 1.0,
    rng: np.random.Generator | None = None,
    reuse_inputs: bool = False,
) -> torch.Tensor:
    """base + λ · combine_i(w_i · sparsify(x_i − base)) (Ilharco et al. 2022, arXiv:2212.04089).

    TIES (arXiv:2306.01708) is sparsify="magnitude", consensus="sum": trim each task vector to
    its top-`density` magnitudes, elect a sign per entry by total signed mass, and average only
    the entries that agree (disjoint mean, weighted). DARE (arXiv:2311.03099) is
    sparsify="random" with rescale (dare_linear without consensus, dare_ties with it), its mask
    drawn from `rng`.
    base, others: tensors of one shape. Returns base's dtype. With `reuse_inputs` the tensors in
    `others` are overwritten by their task vectors (saves one copy per input; the executor owns them).
    """
    if not others:
        return base
    densities = densities or [1.0] * len(others)
    deltas = []
    for x, d in zip(others, densities):
        # the task vector is a fresh tensor (or the caller's own input), so the sparsifier may edit it in place
        delta = x.sub_(base) if reuse_inputs and x.dtype == base.dtype else x - base
        if sparsify == "magnitude":
            delta = magnitude(delta, d, rescale=rescale, inplace=True)
        elif sparsify == "random":
            delta = random_drop(delta, d, rescale=rescale, rng=rng, inplace=True)
        deltas.append(delta)
    w = torch.tensor(weights, dtype=deltas[0].dtype)
    for delta, wi in zip(deltas, w):
        delta.mul_(wi)
    if consensus == "sum":
        mixed, divisor = sign_consensus(deltas, w)
    else:
        mixed = ordered_sum(deltas)
        divisor = w.sum()
        if divisor.abs() < 1e-8:
            divisor = torch.ones_like(divisor)
    if normalize:
        mixed.div_(divisor)
    if lam != 1:
        mixed.mul_(lam)
    return mixed.add_(base).to(base.dtype)


def sign_consensus(deltas: list[torch.Tensor], weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TIES "elect sign" and "disjoint merge" (Yadav et al. 2023, arXiv:2306.01708, steps 2-3).

    deltas: k weighted task vectors d_i = w_i·τ_i of one shape; weights: [k]. Per entry the sign
    e of Σ_i d_i is elected (a sum of exactly 0 elects +), and d_i agrees when sign(d_i) = e (a
    zero never agrees). Returns (Σ_i agree_i·d_i, Σ_i agree_i·w_i), a divisor of 0 set to 1, in
    the deltas' dtype. Computed as e·Σ_i relu(e·d_i): e·d_i and relu are exact, so the sums equal
    mergekit's mask-and-sum over the stacked [k, ...] deltas (same order, same accumulator
    precision: float32 for half types), without its k-fold sign and mask copies.
    """
    dtype = deltas[0].dtype
    acc = accumulator_dtype(dtype)
    total = ordered_sum(deltas)  # rounded to the deltas' dtype, as mergekit's sum is
    # e = ±1; copysign gives + for +0 (a cancelling sum elects +); -0 arises only when every
    # d_i is ±0, and then nothing agrees whatever e is
    elected = torch.ones_like(total, dtype=acc).copysign_(total)
    del total
    mixed = torch.zeros_like(elected)
    divisor = torch.zeros_like(elected)
    for delta, w in zip(deltas, weights):
        agreeing = torch.mul(delta, elected).relu_()  # |d_i| where d_i agrees, else 0
        mixed.add_(agreeing)
        divisor.add_(agreeing.sign_(), alpha=float(w))
    mixed.mul_(elected)
    divisor.add_(divisor == 0)  # 0 -> 1 (an add: far faster than masked_fill_ on CPU)
    return mixed.to(dtype), divisor.to(dtype)


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch.sum accumulates in on CPU: float32 for half types, else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def ordered_sum(tensors: list[torch.Tensor], acc: torch.dtype | None = None) -> torch.Tensor:
    """x_0 + x_1 + ... left to right in the accumulator dtype, as torch sums a stacked [k, ...] over dim 0.

    Returns the accumulator dtype when `acc` is given, else the inputs' dtype (rounded once at the end).
    """
    dtype = tensors[0].dtype
    out = tensors[0].to(acc or accumulator_dtype(dtype), copy=True)
    for x in tensors[1:]:
        out.add_(x)
    return out if acc is not None else out.to(dtype)


def model_stock(base: torch.Tensor, others: list[torch.Tensor], filter_wise: bool = False) -> torch.Tensor:
    """Model Stock (Jang et al. 2024, arXiv:2403.19522): t·mean(x_i) + (1−t)·base, t = kcosθ/(1+(k−1)cosθ).

    cos θ is the mean pairwise cosine between the task vectors x_i − base (per row with filter_wise).
    base, others: tensors of one shape, k = len(others) >= 2.
    """
    shape = base.shape
    if filter_wise:
        w0 = base.unsqueeze(0) if base.dim() == 1 else base
        ws = [x.unsqueeze(0) if x.dim() == 1 else x for x in others]
    else:
        w0, ws = base.reshape(-1), [x.reshape(-1) for x in others]
    offsets = [x - w0 for x in ws]
    cos = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norm = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cos.append(((a * b).sum(dim=-1) / norm.clamp(min=1e-6)).clamp(-1, 1))
    cos_theta = torch.stack(cos).mean(dim=0).unsqueeze(-1)
    k = len(ws)
    denom = 1 + (k - 1) * cos_theta
    singular = denom.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos_theta),
                    k * cos_theta / torch.where(singular, torch.ones_like(denom), denom))
    return (t * (sum(ws) / k) + (1 - t) * w0).reshape(shape)


def passthrough(tensor: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Copy one input unchanged (optionally scaled): the building block of depth up-scaling."""
    return tensor if scale is None else tensor * scale
