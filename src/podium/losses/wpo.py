"""WPO: weight each pair by how likely the policy is to generate it, to make off-policy data act on-policy.

Reference: Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization"
(arXiv:2406.11827), eq. 2 with the aligned (sampling-adjusted) per-token probabilities, as TRL 1.16's
``use_weighting``: a sequence's weight is

    w(y|x) = exp( mean_t [log p(y_t) - log sum_v p(v)^2] )

(the per-token log-prob relative to the distribution's own self-probability), computed without gradient,
and a pair's loss is multiplied by w(y_w|x) * w(y_l|x).
"""

from __future__ import annotations

import torch
from torch import Tensor


def wpo_weights(token_logps: Tensor, token_log_sum_sq: Tensor, token_seg: Tensor, n_pairs: int) -> Tensor:
    """Pair weights [B] from token log-probs [M], log sum_v p(v)^2 at each token's position [M] and the token's
    sequence [M] (i: chosen of pair i, B + i: rejected), detached."""
    n = 2 * n_pairs
    aligned = (token_logps - token_log_sum_sq).detach()
    sums = torch.zeros(n, dtype=aligned.dtype, device=aligned.device).index_add(0, token_seg, aligned)
    counts = torch.zeros(n, dtype=aligned.dtype, device=aligned.device).index_add(0, token_seg, torch.ones_like(aligned))
    weights = torch.exp(sums / counts.clamp(min=1))
    return weights[:n_pairs] * weights[n_pairs:]
