"""The value every podium loss returns: per-example losses plus detached implicit rewards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from torch import Tensor


class LossOutput(NamedTuple):
    """Per-example losses and the rewards the trainer logs.

    losses:           [B] per-example losses, differentiable; the trainer sums them (one reduction, elsewhere).
    chosen_rewards:   [B] reward of the chosen response, detached (beta * rho_w for policy losses); None for a
                      loss without rewards (`sft`). NaN marks an example that has no chosen response (KTO).
    rejected_rewards: [B] reward of the rejected response, detached (beta * rho_l for policy losses), or None.
    metrics:          further per-example values to log, name -> [B] detached (KTO's `kl`, ORPO's `nll_loss`);
                      a batch-level value is repeated B times.
    """

    losses: Tensor
    chosen_rewards: Tensor | None
    rejected_rewards: Tensor | None
    metrics: Mapping[str, Tensor] | None = None


def implicit_rewards(rho_w: Tensor, rho_l: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """DPO's implicit rewards (beta * rho_w, beta * rho_l), detached; rho = log pi_theta(y|x) - log pi_ref(y|x), [B]."""
    return beta * rho_w.detach(), beta * rho_l.detach()
