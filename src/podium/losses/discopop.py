"""DiscoPOP: the log-ratio-modulated loss that an LLM-driven search discovered (LRML).

Reference: Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for Large Language
Models" (arXiv:2406.08414), eq. 5, as TRL 1.16's ``discopop``: a blend of the logistic (DPO) and the
exponential loss, weighted by sigma(beta Delta / tau).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.divergence import f_scores
from podium.losses.output import LossOutput, implicit_rewards


def discopop_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    discopop_tau: float = 0.05,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """(1 - m) * (-log sigma(z)) + m * exp(-z), z = beta Delta, m = sigma(z / tau).

    Delta = s_w - s_l (f-DPO scores). Inputs [B]; outputs [B]; rewards beta * rho. The loss is not monotone
    in Delta near 0 for small tau (the paper's non-convex region): there a larger margin can cost more.
    """
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    z = beta * (s_w - s_l)
    m = torch.sigmoid(z / discopop_tau)
    # m * exp(-z) as exp(log m - z): where z is very negative, exp(-z) overflows while m underflows to 0, and
    # the product (0 * inf) would be NaN; TRL multiplies the two, which agrees everywhere both are finite.
    losses = -F.logsigmoid(z) * (1 - m) + torch.exp(F.logsigmoid(z / discopop_tau) - z)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
