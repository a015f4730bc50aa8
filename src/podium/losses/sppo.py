"""SPPO: regress each response's log-ratio onto eta * (its estimated win probability - 1/2), eta = 1/beta.

Inputs are per-example sequence log-probs [B] (see :mod:`podium.losses.dpo`); rho_w, rho_l are the
chosen and rejected log-ratios to the reference pi_t (the previous iteration's policy).

Reference: Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment",
Algorithm 1, eq. 4.7: theta_{t+1} = argmin E_y (log pi_theta(y|x)/pi_t(y|x) - eta (P(y > pi_t|x) - 1/2))^2.
On a pair podium sums the two squares. Departure: the SPPO authors' code halves that sum; podium
does not, so that ``sppo_hard`` equals TRL 1.16's ``sppo_hard`` (tested) and the hard variant is
exactly the soft one at p_w = 1, p_l = 0. The factor 2 only rescales the loss (scale-free for Adam
and RMSProp up to epsilon).
"""

from __future__ import annotations

from torch import Tensor

from podium.losses.output import LossOutput, implicit_rewards


def sppo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_prob: Tensor,
    rejected_prob: Tensor,
    beta: float = 0.001,
) -> LossOutput:
    """SPPO soft: (rho_w - eta (p_w - 1/2))^2 + (rho_l - eta (p_l - 1/2))^2, eta = 1/beta.

    ``chosen_prob`` / ``rejected_prob`` [B] are p_w, p_l = estimated P(y > pi_t | x), the mean of the
    judge's preference-matrix row over the K samples (self counted as 1/2). Rewards: beta * rho [B].
    The Gemma-2-9B-It-SPPO card uses eta = 1000, i.e. beta = 0.001 (the default here).
    """
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    eta = 1.0 / beta
    losses = (rho_w - eta * (chosen_prob - 0.5)) ** 2 + (rho_l - eta * (rejected_prob - 0.5)) ** 2
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def sppo_single_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    pair_prob: Tensor,
    beta: float = 0.001,
) -> LossOutput:
    """SPPO with a single probability: soft SPPO with p_w = p, p_l = 1 - p, p = P(y_w > y_l | x).

    ``pair_prob`` [B] is the judge's probability that the chosen response beats the rejected one
    (the SPPO code's ``chosen_probs``, its ``sppo_single`` loss type). Rewards: beta * rho [B].
    """
    return sppo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_prob=pair_prob,
        rejected_prob=1.0 - pair_prob,
        beta=beta,
    )


def sppo_hard_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.001,
) -> LossOutput:
    """SPPO hard: (rho_w - eta/2)^2 + (rho_l + eta/2)^2, i.e. soft SPPO with p_w = 1, p_l = 0.

    Equals TRL 1.16's ``loss_type="sppo_hard"``. Rewards: beta * rho [B].
    """
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    half_eta = 0.5 / beta
    losses = (rho_w - half_eta) ** 2 + (rho_l + half_eta) ** 2
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
