"""NCA: noise-contrastive alignment on pairs, which keeps the chosen response's own likelihood up.

Reference: Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards"
(arXiv:2402.05369), the pairwise form (K = 2) as TRL 1.16's ``nca_pair``: where DPO only widens the
margin, NCA scores each response's reward r = beta * rho on its own, so the chosen log-ratio is pushed
above zero rather than only above the rejected one.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput, implicit_rewards


def nca_pair_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """-log sigma(r_w) - 1/2 log sigma(-r_w) - 1/2 log sigma(-r_l), r = beta * rho. Inputs [B]; outputs [B]."""
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    r_w, r_l = beta * rho_w, beta * rho_l
    losses = -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
