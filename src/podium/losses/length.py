"""LD-DPO: length-desensitised sequence log-probs, the part of the longer response past the shorter one down-weighted.

Reference: Liu et al. 2024, "Length Desensitization in Direct Preference Optimization"
(arXiv:2409.06411), eq. 9, as TRL 1.16's ``ld_alpha``: for a pair with completion lengths l_w, l_l and
l_p = min(l_w, l_l), a sequence's log-prob becomes

    sum_{t <= l_p} log p_t + alpha * sum_{t > l_p} log p_t,

for the policy and the reference alike (alpha = 1: plain sums; alpha = 0: only the common length).
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_positions(token_seg: Tensor, n_segments: int) -> Tensor:
    """1-based position of each token [M] within its segment, tokens of a segment in order of appearance."""
    order = torch.argsort(token_seg, stable=True)
    counts = torch.zeros(n_segments, dtype=torch.long, device=token_seg.device).index_add_(
        0, token_seg, torch.ones_like(token_seg))
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=token_seg.device)
    return ranks - starts[token_seg] + 1


def length_desensitized_logps(token_logps: Tensor, token_seg: Tensor, n_pairs: int, ld_alpha: float) -> Tensor:
    """Sequence log-probs [2B] (chosen of pair i at i, rejected at B + i) from token log-probs [M].

    ``token_seg`` [M] names each token's sequence (i or B + i), tokens of one sequence in order.
    """
    n = 2 * n_pairs
    pos = token_positions(token_seg, n)
    counts = torch.zeros(n, dtype=torch.long, device=token_seg.device).index_add_(0, token_seg, torch.ones_like(token_seg))
    shared = torch.minimum(counts[:n_pairs], counts[n_pairs:]).repeat(2)
    weight = torch.where(pos <= shared[token_seg], 1.0, ld_alpha).to(token_logps.dtype)
    return torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device).index_add(0, token_seg,
                                                                                        token_logps * weight)


def length_desensitized_reference(full: Tensor, shared: Tensor, ld_alpha: float) -> Tensor:
    """Reference log-probs under LD-DPO from two plain passes: ``full`` [N, 2] over the whole completions and
    ``shared`` [N, 2] over each completion cut to the pair's common length: shared + alpha * (full - shared)."""
    return shared + ld_alpha * (full - shared)
