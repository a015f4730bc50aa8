"""EXO: exact optimisation of the KL-regularised objective on pairs (EXO-pref, K = 2).

Reference: Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment"
(arXiv:2402.00856), eq. 16: minimise KL(p_f || p_rh) over {y_w, y_l}, with p_f = softmax(beta * scores)
the policy's distribution over the pair and p_rh = (1 - eps, eps) the label-smoothed preference.
As TRL 1.16's ``exo_pair``: eps is ``label_smoothing`` and must be > 0 (the paper recommends 1e-3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.divergence import f_scores
from podium.losses.output import LossOutput, implicit_rewards


def exo_pair_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 1e-3,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """q_w (log q_w - log(1 - eps)) + q_l (log q_l - log eps), q_w = sigma(beta Delta), q_l = 1 - q_w.

    Delta = s_w - s_l, the difference of the f-DPO scores (rho_w - rho_l under reverse KL). The loss is 0
    exactly when the policy's pair distribution equals (1 - eps, eps). Inputs [B]; outputs [B];
    rewards beta * rho.
    """
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(f"exo_pair needs 0 < label_smoothing < 1 (the paper uses 1e-3), got {label_smoothing}")
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    z = beta * (s_w - s_l)
    log_pw, log_pl = math.log1p(-label_smoothing), math.log(label_smoothing)
    losses = torch.sigmoid(z) * (F.logsigmoid(z) - log_pw) + torch.sigmoid(-z) * (F.logsigmoid(-z) - log_pl)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
