"""DPO family on sequence log-probs: sigmoid DPO (+ cDPO label smoothing), IPO, hinge, RPO and DPOP.

Every function takes per-example sequence log-probs (sums over completion tokens), each [B]:
``policy_chosen_logps``, ``policy_rejected_logps``, ``reference_chosen_logps``,
``reference_rejected_logps``, and returns a :class:`LossOutput` with per-example ``losses`` [B] and
the detached implicit rewards ``beta * rho`` [B]. Notation: rho_w = log pi_theta(y_w|x) - log
pi_ref(y_w|x), rho_l likewise, Delta = rho_w - rho_l.

Those built on the difference Delta (dpo, sigmoid_norm, hinge, ipo) take ``f_divergence_type`` and
``f_alpha_divergence_coef`` (f-DPO, :mod:`podium.losses.divergence`): the scores f'(exp(rho)) replace rho
inside the loss; the logged rewards stay beta * rho, as TRL logs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.divergence import f_scores
from podium.losses.output import LossOutput, implicit_rewards


def _log_ratios(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
) -> tuple[Tensor, Tensor]:
    return policy_chosen_logps - reference_chosen_logps, policy_rejected_logps - reference_rejected_logps


def _sigmoid_loss(logits: Tensor, label_smoothing: float) -> Tensor:
    """-(1 - eps) log sigma(z) - eps log sigma(-z); eps = 0 is plain -log sigma(z)."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    losses = -F.logsigmoid(logits)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return losses


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """Sigmoid DPO: -log sigma(beta * (rho_w - rho_l)); with label smoothing eps, conservative DPO (cDPO).

    cDPO: -(1 - eps) log sigma(beta Delta) - eps log sigma(-beta Delta), the DPO loss under labels
    flipped with probability eps. Shapes: all inputs [B]; output fields [B].

    References: Rafailov et al. 2023, "Direct Preference Optimization", eq. 7; cDPO: Mitchell 2023,
    "A note on DPO with noisy preferences & relationship to IPO". TRL 1.16's ``sigmoid`` loss has no
    label smoothing; the same cDPO expression is TRL's ``aot`` loss with batch size 1 (tested).
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    losses = _sigmoid_loss(beta * (s_w - s_l), label_smoothing)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def sigmoid_norm_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """Length-normalised sigmoid DPO: -log sigma(beta (rho_w / |y_w| - rho_l / |y_l|)).

    ``chosen_lengths`` / ``rejected_lengths`` [B] are completion token counts (clamped to >= 1). The
    per-token log-ratio removes DPO's pull toward longer chosen responses (as SimPO's average log-prob
    does, but against the reference). Rewards stay beta * rho. Shapes: inputs [B]; outputs [B].

    Reference: TRL 1.16's ``sigmoid_norm`` loss type (``DPOTrainer._compute_loss``); the length
    normalisation is that of IPO in TRL, and of the length-normalised DPO in Meng et al. 2024 (SimPO,
    "length-normalized DPO" baseline).
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    delta = s_w / chosen_lengths.clamp(min=1) - s_l / rejected_lengths.clamp(min=1)
    losses = -F.logsigmoid(beta * delta)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def dpop_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    lambda_: float = 50.0,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """DPO-Positive: -log sigma(beta * (rho_w - rho_l - lambda * max(0, -rho_w))); lambda = 0 is DPO.

    The penalty is active only while the policy puts less mass on the chosen response than the
    reference (rho_w < 0), which plain DPO allows as long as the margin grows. ``lambda_`` is the
    config key ``lambda``. Shapes: all inputs [B]; output fields [B].

    Reference: Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with
    DPO-Positive" (the paper writes the penalty as max(0, log pi_ref(y_w|x)/pi_theta(y_w|x))).
    The optional cDPO label smoothing is a podium extension, not in the paper.
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    penalty = torch.clamp(-rho_w, min=0.0)
    losses = _sigmoid_loss(beta * (rho_w - rho_l - lambda_ * penalty), label_smoothing)
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """IPO, length-normalised as TRL: (rho_w / |y_w| - rho_l / |y_l| - 1 / (2 beta))^2.

    ``chosen_lengths`` / ``rejected_lengths`` [B] are completion token counts (clamped to >= 1, as
    TRL does). beta is the IPO paper's tau. Rewards stay beta * rho (not length-normalised), as TRL
    logs them. Shapes: all inputs [B]; output fields [B].

    Reference: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", eq. 17. Departure from the paper: the paper's log-ratios are sequence sums; TRL
    (and podium) divide each by its completion length, which TRL says the IPO authors confirmed is
    what the paper's experiments used.
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    delta = s_w / chosen_lengths.clamp(min=1) - s_l / rejected_lengths.clamp(min=1)
    losses = (delta - 1.0 / (2.0 * beta)) ** 2
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def hinge_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
) -> LossOutput:
    """Hinge (SLiC-style) DPO: relu(1 - beta * (rho_w - rho_l)). Shapes: inputs [B]; outputs [B].

    Reference: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
    with margin delta = 1/beta and the log-ratio to the reference (as TRL's ``hinge``) in
    place of SLiC's raw policy log-probs.
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    s_w, s_l = f_scores(rho_w, rho_l, f_divergence_type, f_alpha_divergence_coef)
    losses = torch.relu(1.0 - beta * (s_w - s_l))
    return LossOutput(losses, *implicit_rewards(rho_w, rho_l, beta))


def rpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    beta: float = 0.1,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """RPO: DPO + alpha * NLL(y_w), NLL(y_w) = -log pi_theta(y_w|x) / |y_w| (mean over chosen tokens).

    ``chosen_lengths`` [B] are chosen completion token counts. Shapes: inputs [B]; outputs [B].

    Reference: Pang et al. 2024, "Iterative Reasoning Preference Optimization" (NLL
    normalised by the chosen length). Departure from TRL: TRL 1.16 writes RPO as
    ``loss_type=["sigmoid", "sft"]`` whose NLL is a token mean over the whole batch; podium takes the
    per-example token mean so that losses stay per-example. The two agree when all chosen lengths
    are equal (tested against TRL).
    """
    dpo = dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta=beta,
        label_smoothing=label_smoothing,
    )
    nll = -policy_chosen_logps / chosen_lengths.clamp(min=1)
    return LossOutput(dpo.losses + alpha * nll, dpo.chosen_rewards, dpo.rejected_rewards)
