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

    ``chosen_score`` / ``rejected_score`` [B] are s_hat(y > pi_t | x): the mean preference logit of
    the response against the K samples of pi_t for its prompt (self counted as 0). Because the
    logits are skew-symmetric, s_hat is centred at 0 where SPPO's win probability is centred at 1/2,
    so no offset is needed. Inputs [B]; output fields [B]; rewards beta * rho.

    Scale of s_hat (podium.selfplay.targets gives it): the GPM code's convention,
    s_hat_k = mean_j (S_kj - S_jk) with S_kj = s(k > j) / tau its score table
    (``scripts/compute_score_from_raw.py``), i.e. mean_j 2 s(k > j) / tau. Podium's earlier targets were
    the raw mean score mean_j s(k > j), smaller by 2/tau (20x at tau = 0.1), so at the same beta
    their regression target eta * s_hat was 20x smaller. To reproduce such a run, multiply its beta
    by 2/tau (0.001 -> 0.02 at tau = 0.1): eta * s_hat is then the same number.

    Reference: Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model for
    Language Model Alignment", section on General Preference Optimization (the SPPO-style iteration
    with the preference score). As in :func:`podium.losses.sppo.sppo_loss` the two squares are
    summed, not averaged (the SPPO code averages them: half the loss, the same minimiser).
    """
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    eta = 1.0 / beta
    losses = (rho_w - eta * chosen_score) ** 2 + (rho_l - eta * rejected_score) ** 2
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
