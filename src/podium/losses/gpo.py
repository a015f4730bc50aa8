"""GPO: SPPO's square-loss regression with the GPM preference score in place of the win probability."""

from __future__ import annotations

from torch import Tensor

from podium.losses.output import LossOutput, implicit_rewards


def gpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_score: Tensor,
    rejected_score: Tensor,
    beta: float = 0.001,
) -> LossOutput:
    """GPO: (rho_w - eta * s_w)^2 + (rho_l - eta * s_l)^2, eta = 1/beta.

    ``chosen_score`` / ``rejected_score`` [B] are s_hat(y > pi_t | x): the mean GPM score of the
    response against the K samples of pi_t for its prompt (self counted as s(y > y) = 0). Because
    the GPM score is skew-symmetric, s_hat is centred at 0 where SPPO's win probability is centred
    at 1/2, so no offset is needed. Inputs [B]; output fields [B]; rewards beta * rho.

    Reference: Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model for
    Language Model Alignment", section on General Preference Optimization (the SPPO-style iteration
    with the preference score). As in :func:`podium.losses.sppo.sppo_loss` the two squares are
    summed, not averaged. The scale of s_hat (raw score or divided by tau) is the caller's choice and
    is absorbed by beta.
    """
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    eta = 1.0 / beta
    losses = (rho_w - eta * chosen_score) ** 2 + (rho_l - eta * rejected_score) ** 2
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
