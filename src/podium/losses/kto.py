"""KTO on unpaired data: each completion is desirable or undesirable on its own (prospect-theoretic loss).

Reference: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"
(arXiv:2402.01306), eq. 7, as TRL 1.16's ``KTOTrainer``. The reference point z_0 is the KL divergence
of the policy from the reference, estimated on the batch from mismatched (prompt, completion) pairs
y'_i (another example's completion under prompt x_i):

    z_0 = max(0, mean_i [log pi_theta(y'_i|x_i) - log pi_ref(y'_i|x_i)]),   detached,

then a desirable example costs lambda_D (1 - sigma(beta (rho - z_0))) and an undesirable one
lambda_U (1 - sigma(beta (z_0 - rho))), rho = log pi_theta(y|x) - log pi_ref(y|x). The KL estimate is a
function of the (micro-)batch, as in TRL (which averages it over processes; podium's objective too).

Also TRL's ``apo_zero_unpaired`` (D'Oosterlinck et al. 2024, APO-zero on unpaired data): no KL term;
desirable 1 - sigma(beta rho), undesirable sigma(beta rho).
"""

from __future__ import annotations

import torch
from torch import Tensor

from podium.losses.output import LossOutput


def kto_kl_estimate(policy_kl_logps: Tensor, reference_kl_logps: Tensor) -> Tensor:
    """mean_i (log pi_theta(y'_i|x_i) - log pi_ref(y'_i|x_i)) over the batch [B] -> scalar, detached, unclamped."""
    return (policy_kl_logps - reference_kl_logps).mean().detach()


def _unpaired_rewards(rho: Tensor, desirable: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """beta * rho where the example is desirable (else NaN), and where it is undesirable (else NaN)."""
    reward = beta * rho.detach()
    nan = torch.full_like(reward, float("nan"))
    return torch.where(desirable, reward, nan), torch.where(desirable, nan, reward)


def kto_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    policy_kl_logps: Tensor,
    reference_kl_logps: Tensor,
    *,
    label: Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    kl: Tensor | None = None,
) -> LossOutput:
    """KTO per example [B].

    ``policy_logps`` / ``reference_logps`` [B]: the completion's sequence log-probs; ``policy_kl_logps`` /
    ``reference_kl_logps`` [B]: those of the example's mismatched KL completion; ``label`` [B]: 1 desirable,
    0 undesirable. ``kl``: the KL estimate to use (scalar; the objective passes the mean over processes),
    default `kto_kl_estimate` of this batch; it is clamped at 0 here. Rewards: beta * rho in
    ``chosen_rewards`` for desirable examples and in ``rejected_rewards`` for undesirable ones, NaN
    elsewhere; ``metrics["kl"]`` the clamped estimate, repeated [B].
    """
    if kl is None:
        kl = kto_kl_estimate(policy_kl_logps, reference_kl_logps)
    kl = kl.detach().clamp(min=0)
    rho = policy_logps - reference_logps
    desirable = label.bool()
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (rho - kl))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (kl - rho))))
    return LossOutput(losses, *_unpaired_rewards(rho, desirable, beta), {"kl": kl.expand(rho.shape[0])})


def apo_zero_unpaired_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    *,
    label: Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> LossOutput:
    """Unpaired APO-zero [B]: desirable lambda_D (1 - sigma(beta rho)), undesirable lambda_U sigma(beta rho).

    Shapes and rewards as `kto_loss`; no KL completion is needed.
    """
    rho = policy_logps - reference_logps
    desirable = label.bool()
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * rho)),
                         undesirable_weight * torch.sigmoid(beta * rho))
    return LossOutput(losses, *_unpaired_rewards(rho, desirable, beta))
