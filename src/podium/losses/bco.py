"""BCO on pairs: each response's implicit reward is a logit of a binary classifier (chosen = 1, rejected = 0).

Reference: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment"
(arXiv:2404.04656), eq. 7 applied to the two responses of a pair. Departure from the paper, as TRL 1.16's
``bco_pair``: the paper shifts each reward by delta, a running mean of the rewards; TRL 1.16 (and podium)
use delta = 0, so the loss is a function of the batch alone.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput, implicit_rewards


def bco_pair_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """-log sigma(beta rho_w) - log sigma(-beta rho_l). Inputs [B]; outputs [B]; rewards beta * rho."""
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = -F.logsigmoid(beta * rho_w) - F.logsigmoid(-beta * rho_l)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))
