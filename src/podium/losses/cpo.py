"""CPO and SimPO: reference-free preference losses on the policy's own log-probs, plus an NLL term.

CPO (Xu et al. 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in
Machine Translation", arXiv:2401.08417, eq. 3): DPO with the reference model dropped (a uniform
reference), -log sigma(beta (log pi(y_w|x) - log pi(y_l|x))), plus cpo_alpha times the chosen responses'
NLL (a token mean over the batch, the behaviour-cloning regulariser). Hinge and IPO forms as TRL.

SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
arXiv:2405.14734, eq. 6): the average per-token log-prob is the reward, with a target margin gamma:
-log sigma(beta (avg_w - avg_l) - gamma). With cpo_alpha > 0 it is TRL's CPO-SimPO.

AlphaPO (Gupta et al. 2025, "AlphaPO: Reward Shape Matters for LLM Alignment", arXiv:2501.03884):
``alphapo_alpha`` = a != 0 replaces each log-prob term l by the reward (1 - exp(l)^(-a)) / a (TRL's CPO
``alpha``, which applies to every CPO loss; TRL's ``loss_type="alphapo"`` is simpo with cpo_alpha 0).

All as TRL 1.16's ``trl.experimental.cpo.CPOTrainer.cpo_loss``: sums of token log-probs for the sigmoid
and hinge forms, averages for IPO and SimPO; rewards beta * (the term used, after AlphaPO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput
from podium.losses.sft import batch_nll


def _terms(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, chosen_lengths: Tensor,
           rejected_lengths: Tensor, average: bool, alphapo_alpha: float) -> tuple[Tensor, Tensor]:
    """The chosen and rejected terms [B] the loss compares: sums or averages, AlphaPO-shaped when a != 0."""
    w, lo = policy_chosen_logps, policy_rejected_logps
    if average:
        w, lo = w / chosen_lengths.clamp(min=1), lo / rejected_lengths.clamp(min=1)
    if alphapo_alpha != 0.0:
        w = (1 - torch.exp(w).pow(-alphapo_alpha)) / alphapo_alpha
        lo = (1 - torch.exp(lo).pow(-alphapo_alpha)) / alphapo_alpha
    return w, lo


def _smoothed(z: Tensor, label_smoothing: float) -> Tensor:
    return -F.logsigmoid(z) * (1 - label_smoothing) - F.logsigmoid(-z) * label_smoothing


def _finish(losses: Tensor, w: Tensor, lo: Tensor, beta: float, cpo_alpha: float, policy_chosen_logps: Tensor,
            chosen_lengths: Tensor) -> LossOutput:
    nll = batch_nll(policy_chosen_logps, chosen_lengths)
    if cpo_alpha:
        losses = losses + cpo_alpha * nll
    return LossOutput(losses, beta * w.detach(), beta * lo.detach(),
                      {"nll_loss": nll.detach().expand(losses.shape[0])})


def cpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
    alphapo_alpha: float = 0.0,
) -> LossOutput:
    """CPO (TRL ``loss_type="sigmoid"``): smoothed -log sigma(beta (l_w - l_l)) + cpo_alpha * NLL(chosen).

    l = summed log-prob (AlphaPO-shaped when a != 0). Inputs [B] (``*_lengths``: completion token
    counts); outputs [B], the NLL a batch token mean repeated per pair; ``metrics["nll_loss"]``.
    """
    w, lo = _terms(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, False, alphapo_alpha)
    losses = _smoothed(beta * (w - lo), label_smoothing)
    return _finish(losses, w, lo, beta, cpo_alpha, policy_chosen_logps, chosen_lengths)


def cpo_hinge_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    cpo_alpha: float = 1.0,
    alphapo_alpha: float = 0.0,
) -> LossOutput:
    """CPO with a hinge (TRL ``loss_type="hinge"``): relu(1 - beta (l_w - l_l)) + cpo_alpha * NLL(chosen)."""
    w, lo = _terms(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, False, alphapo_alpha)
    losses = torch.relu(1 - beta * (w - lo))
    return _finish(losses, w, lo, beta, cpo_alpha, policy_chosen_logps, chosen_lengths)


def cpo_ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    cpo_alpha: float = 1.0,
    alphapo_alpha: float = 0.0,
) -> LossOutput:
    """CPO with IPO's square (TRL ``loss_type="ipo"``): (avg_w - avg_l - 1/(2 beta))^2 + cpo_alpha * NLL(chosen).

    avg = average per-token log-prob (AlphaPO-shaped when a != 0)."""
    w, lo = _terms(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, True, alphapo_alpha)
    losses = (w - lo - 1 / (2 * beta)) ** 2
    return _finish(losses, w, lo, beta, cpo_alpha, policy_chosen_logps, chosen_lengths)


def simpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    cpo_alpha: float = 0.0,
    alphapo_alpha: float = 0.0,
) -> LossOutput:
    """SimPO: smoothed -log sigma(beta (avg_w - avg_l - gamma / beta)) (+ cpo_alpha * NLL(chosen): CPO-SimPO).

    avg = average per-token log-prob (AlphaPO-shaped when a != 0); gamma = ``simpo_gamma`` is the target
    reward margin. Inputs [B]; outputs [B]; rewards beta * avg.
    """
    w, lo = _terms(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, True, alphapo_alpha)
    losses = _smoothed(beta * (w - lo - simpo_gamma / beta), label_smoothing)
    return _finish(losses, w, lo, beta, cpo_alpha, policy_chosen_logps, chosen_lengths)
