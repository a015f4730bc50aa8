"""Sparsifiers for task vectors: TIES magnitude trimming and DARE random drop.

TIES: Yadav et al. 2023, "TIES-Merging" (arXiv:2306.01708), step 1 "trim".
DARE: Yu et al. 2023, "Language Models are Super Mario" (arXiv:2311.03099).
"""

from __future__ import annotations

import torch


def rescale_l1(delta: torch.Tensor, kept: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Scale `kept` so its L1 norm equals that of `delta` (mergekit's `rescale: true`).

    For DARE this is, in expectation, the paper's 1/density rescale, but exact per tensor.
    """
    before = delta.abs().sum()
    after = kept.abs().sum()
    if before < eps or after < eps:
        return kept
    return kept * (before / after)


def magnitude(delta: torch.Tensor, density: float, rescale: bool = False) -> torch.Tensor:
    """Keep the `density` fraction of entries with largest |delta| (at least one), zero the rest.

    delta: any shape. Returns the same shape and dtype.
    """
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    k = max(1, int(density * delta.numel()))
    mask = torch.zeros(delta.numel(), dtype=delta.dtype)
    # argsort (not topk) so ties among equal magnitudes break the way mergekit breaks them
    mask[torch.argsort(delta.abs().reshape(-1).float(), descending=True)[:k]] = 1
    kept = delta * mask.reshape_as(delta)
    return rescale_l1(delta, kept) if rescale else kept


def random_drop(delta: torch.Tensor, density: float, rescale: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: keep each entry independently with probability `density`, then rescale.

    delta: any shape. With rescale the kept entries are scaled so the L1 norm is preserved.
    """
    if density >= 1:
        return delta
    work = delta if delta.dtype == torch.bfloat16 else delta.float()
    mask = torch.bernoulli(torch.full_like(work, density), generator=generator)
    kept = work * mask
    if rescale:
        kept = rescale_l1(work, kept)
    return kept.to(delta.dtype)
