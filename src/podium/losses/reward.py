"""Bradley–Terry reward-model loss on scalar rewards of the chosen and rejected responses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput


def bradley_terry_loss(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    *,
    margin: Tensor | None = None,
) -> LossOutput:
    """Bradley–Terry: -log sigma(r_w - r_l [- margin]).

    ``chosen_rewards`` / ``rejected_rewards`` [B] are the reward head's scalars (last token); the
    optional ``margin`` [B] is Llama 2's preference-strength margin (TRL's ``margin`` column). Output
    fields [B]; the returned rewards are the inputs, detached, so margin = r_w - r_l is the log-odds
    of P(y_w > y_l).

    References: Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT) eq. 1; margin: Touvron et al.
    2023 (Llama 2) eq. 2.
    """
    logits = chosen_rewards - rejected_rewards
    if margin is not None:
        logits = logits - margin
    return LossOutput(-F.logsigmoid(logits), chosen_rewards.detach(), rejected_rewards.detach())
