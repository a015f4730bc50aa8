"""Robust DPO (rDPO): an unbiased DPO loss under preference labels flipped with a known probability eps.

Reference: Chowdhury et al. 2024, "Provably Robust DPO: Aligning Language Models with Noisy Feedback"
(arXiv:2403.00409), eq. 8. Unlike cDPO's label smoothing (:func:`podium.losses.dpo.dpo_loss`), which
is the DPO loss of the *expected* noisy label, rDPO de-biases it: its expectation over the label noise is
the clean DPO loss. As TRL 1.16's ``robust``; eps = ``label_smoothing`` in [0, 0.5).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from podium.losses.divergence import f_scores
from podium.losses.output import LossOutput, implicit_rewards


def robust_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """(-(1 - eps) log sigma(beta Delta) + eps log sigma(-beta Delta)) / (1 - 2 eps); eps = 0 is DPO.

    Delta = s_w - s_l (f-DPO scores; rho_w - rho_l under reverse KL). The flipped-label term enters with a
    minus sign, so the loss can be negative. Inputs [B]; outputs [B]; rewards beta * rho.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust needs label_smoothing in [0, 0.5), got {label_smoothing}")
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    z = beta * (s_w - s_l)
    clean = -(1 - label_smoothing) * F.logsigmoid(z)
    flipped = -label_smoothing * F.logsigmoid(-z)
    losses = (clean - flipped) / (1 - 2 * label_smoothing)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
