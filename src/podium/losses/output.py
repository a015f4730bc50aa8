"""The value every podium loss returns: per-example losses plus detached implicit rewards."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class LossOutput(NamedTuple):
    """Per-example losses and the rewards the trainer logs.

    losses:           [B] per-example losses, differentiable; the trainer sums them (one reduction, elsewhere).
    chosen_rewards:   [B] reward of the chosen response, detached (beta * rho_w for policy losses).
    rejected_rewards: [B] reward of the rejected response, detached (beta * rho_l for policy losses).
    """

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def implicit_rewards(rho_w: Tensor, rho_l: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """DPO's implicit rewards (beta * rho_w, beta * rho_l), detached; rho = log pi_theta(y|x) - log pi_ref(y|x), [B]."""
    return beta * rho_w.detach(), beta * rho_l.detach()
