"""Sparsifiers for task vectors: TIES magnitude trimming and DARE random drop.

TIES: Yadav et al. 2023, "TIES-Merging" (arXiv:2306.01708), step 1 "trim".
DARE: Yu et al. 2023, "Language Models are Super Mario" (arXiv:2311.03099).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def rescale_l1(kept: torch.Tensor, l1_before: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Scale `kept` in place so its L1 norm is `l1_before`, the norm before masking (mergekit's `rescale: true`).

    For DARE this is, in expectation, the paper's 1/density rescale, but exact per tensor. Norms
    below `eps` leave `kept` as it is.
    """
    after = kept.abs().sum()
    if l1_before < eps or after < eps:
        return kept
    return kept.mul_(l1_before / after)


def magnitude(delta: torch.Tensor, density: float, rescale: bool = False, inplace: bool = False) -> torch.Tensor:
    """Keep the `density` fraction of entries with largest |delta| (k = max(1, int(density·n))), zero the rest.

    delta: any shape, contiguous. Returns the same shape and dtype (`delta` itself, edited, with
    `inplace`). The kept set is exactly mergekit's `argsort(|delta|, descending)[:k]`, found by a
    linear-time selection instead of a sort (see `top_k_mask`).
    """
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    k = max(1, int(density * delta.numel()))
    keep = top_k_mask(delta.abs().reshape(-1).float().numpy(), k)
    before = delta.abs().sum() if rescale else None
    kept = apply_mask(delta if inplace else delta.clone(), keep)
    return rescale_l1(kept, before) if rescale else kept


def top_k_mask(w: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the entries `torch.argsort(w, descending=True)[:k]` picks. w: [n] float32.

    Every entry above the k-th largest value v is kept. When the entries equal to v are all
    kept, or v is 0 (a kept zero changes nothing downstream), that is the whole answer.
    Otherwise the sort's choice among equal magnitudes decides which of them survive: that
    choice is an artifact of torch's unstable CPU sort (introsort), so the same sort is run to
    reproduce it. This is rare in float32 except in tensors of many millions of entries, and
    frequent in bfloat16, whose magnitudes repeat.
    """
    n = w.size
    if k >= n:
        return np.ones(n, dtype=bool)
    v = kth_largest(w, k)
    keep = w > v
    missing = k - np.count_nonzero(keep)
    if missing == 0 or v == 0:
        return keep
    ties = w == v
    if np.count_nonzero(ties) == missing:
        return np.logical_or(keep, ties, out=keep)
    keep[:] = False
    keep[torch.argsort(torch.from_numpy(w), descending=True)[:k].numpy()] = True
    return keep


def kth_largest(w: np.ndarray, k: int, sample_size: int = 1 << 14):
    """The k-th largest entry of w (1-D), exactly, in O(n): Floyd–Rivest selection (CACM 18(3), 1975).

    A sorted random sample brackets the answer between two of its values; one counting pass
    finds how many entries lie above the bracket, and only the entries inside it (a few percent)
    are partitioned. A bracket that misses (probability ~1e-4) falls back to a full partition.
    """
    n = w.size
    if n <= 4 * sample_size:
        return np.partition(w, n - k)[n - k]
    sample = np.sort(w[np.random.default_rng(n).integers(0, n, sample_size)])
    rank = (n - k) / n * sample_size  # ascending position of the answer in the sample
    margin = 4 * math.sqrt(sample_size * 0.25) + 8  # 4 standard deviations of a sample quantile, at worst
    lo = sample[max(int(rank - margin), 0)]
    hi = sample[min(int(rank + margin), sample_size - 1)]
    above = np.count_nonzero(w > hi)
    inside = w[(w >= lo) & (w <= hi)]
    r = k - above  # rank of the answer among the entries inside the bracket, largest first
    if 1 <= r <= inside.size:
        return np.partition(inside, inside.size - r)[inside.size - r]
    return np.partition(w, n - k)[n - k]


def apply_mask(t: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """t · keep in place (t contiguous; keep: [t.numel()] bool). Dropped entries become ±0, as with mergekit's float mask."""
    if t.dtype in (torch.float32, torch.float64):
        values = t.reshape(-1).numpy()
        np.multiply(values, keep, out=values)  # numpy's bool multiply is several times faster than torch's here
    else:
        t.mul_(torch.from_numpy(keep).reshape(t.shape))
    return t


def random_drop(delta: torch.Tensor, density: float, rescale: bool = True,
                rng: np.random.Generator | None = None, inplace: bool = False) -> torch.Tensor:
    """DARE: keep each entry independently with probability `density`, then rescale.

    delta: any shape. With rescale the kept entries are scaled so the L1 norm is preserved
    (≈ 1/density). Computed in float32 (bfloat16 stays bfloat16, as in mergekit). The mask is
    drawn from `rng` (numpy's PCG64, seeded by podium per tensor): a different stream from
    mergekit's torch.bernoulli, so DARE outputs match mergekit in distribution (drop rate,
    rescale), not entry by entry.
    """
    if density >= 1:
        return delta
    rng = rng if rng is not None else np.random.default_rng()
    work = delta if delta.dtype in (torch.bfloat16, torch.float32, torch.float64) else delta.float()
    keep = rng.random(work.numel(), dtype=np.float32) < density
    before = work.abs().sum() if rescale else None
    kept = apply_mask(work if inplace or work is not delta else work.clone(), keep)
    return (rescale_l1(kept, before) if rescale else kept).to(delta.dtype)
