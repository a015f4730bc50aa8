"""AOT: distributional alignment by optimal transport, the sorted batch as a 1-D transport plan.

Reference: Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport"
(arXiv:2406.05882): first-order stochastic dominance of the chosen reward distribution over the
rejected one, whose optimal 1-D coupling pairs the i-th smallest of one with the i-th smallest of the
other. As TRL 1.16's ``aot`` / ``aot_unpaired``, with a logistic loss smoothed by eps = ``label_smoothing``.

These losses are functions of the whole (micro-)batch: the sort runs over it, so loss i belongs to the
i-th order statistic, not to pair i (their sum, which is all the loop uses, is what TRL averages). At
batch size 1 the sort is the identity and ``aot`` equals cDPO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput, implicit_rewards


def _smoothed_logistic(delta: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing


def aot_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Paired AOT: sort_i(log pi(y_w)/pi(y_l)) - sort_i(log pi_ref(y_w)/pi_ref(y_l)) into a smoothed logistic.

    The policy's and the reference's within-pair log-ratios are sorted separately over the batch [B] and
    matched by rank. Inputs [B]; outputs [B] (by rank); rewards beta * rho (by pair).
    """
    logratios, _ = torch.sort(policy_chosen_logps - policy_rejected_logps, dim=0)
    ref_logratios, _ = torch.sort(reference_chosen_logps - reference_rejected_logps, dim=0)
    losses = _smoothed_logistic(logratios - ref_logratios, beta, label_smoothing)
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def aot_unpaired_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Unpaired AOT: sort_i(rho_w) - sort_i(rho_l), the chosen and rejected log-ratios sorted separately.

    Dominance of the chosen over the rejected reward distribution, whichever pair each came from.
    Inputs [B]; outputs [B] (by rank); rewards beta * rho (by pair).
    """
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    sorted_w, _ = torch.sort(rho_w, dim=0)
    sorted_l, _ = torch.sort(rho_l, dim=0)
    losses = _smoothed_logistic(sorted_w - sorted_l, beta, label_smoothing)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
