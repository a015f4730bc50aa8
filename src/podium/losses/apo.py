"""APO: anchored preference optimisation, which says which way each likelihood should move.

Reference: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions"
(arXiv:2408.06266), eqs. 7 and 8, as TRL 1.16's ``apo_zero`` and ``apo_down``. apo_zero: the chosen
responses are better than the model's own outputs (raise chosen, lower rejected); apo_down: they are
worse (lower both, rejected more). The unpaired apo_zero (TRL's KTO ``apo_zero_unpaired``) is in
:mod:`podium.losses.kto`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from podium.losses.output import LossOutput, implicit_rewards


def apo_zero_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """(1 - sigma(beta rho_w)) + sigma(beta rho_l). Inputs [B]; outputs [B]; rewards beta * rho."""
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = (1 - torch.sigmoid(beta * rho_w)) + torch.sigmoid(beta * rho_l)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def apo_down_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """sigma(beta rho_w) + (1 - sigma(beta (rho_w - rho_l))). Inputs [B]; outputs [B]; rewards beta * rho."""
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = torch.sigmoid(beta * rho_w) + (1 - torch.sigmoid(beta * (rho_w - rho_l)))
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
