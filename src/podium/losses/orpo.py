"""ORPO: odds-ratio preference optimisation, SFT and preference in one reference-free loss.

Reference: Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model"
(arXiv:2403.07691), eqs. 4-7, as TRL 1.16's ``trl.experimental.orpo.ORPOTrainer``:

    L = NLL(chosen) - lambda * log sigma(log odds(y_w|x) - log odds(y_l|x)),
    odds(y|x) = P / (1 - P),  P = exp(mean per-token log-prob of y),

lambda = ``beta``. The NLL is TRL's: a token mean over the batch of every predicted token of the chosen
sequences, the prompt's included (TRL: "orpo chosen nll loss is computed over the full prompt and
response"; the first token has no prediction), so the objective also needs the prompt's log-probs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput
from podium.losses.sft import batch_nll

_LOG_HALF = -math.log(2)


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2 (elementwise)."""
    return torch.where(x < _LOG_HALF, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    prompt_logps: Tensor,
    prompt_lengths: Tensor,
    beta: float = 0.1,
) -> LossOutput:
    """NLL(prompt + chosen, batch token mean) - beta * log sigma(log odds ratio), per pair [B].

    ``policy_*_logps`` [B]: summed completion log-probs; ``*_lengths`` [B]: their token counts;
    ``prompt_logps`` [B]: summed log-probs of the prompt's tokens after its first, ``prompt_lengths`` [B]
    their count. Rewards: beta * average per-token log-prob. ``metrics``: ``nll_loss``, ``log_odds_ratio``
    (log sigma of the log odds ratio) and ``log_odds_chosen`` (the log odds ratio).
    """
    avg_w = (policy_chosen_logps / chosen_lengths.clamp(min=1)).float()
    avg_l = (policy_rejected_logps / rejected_lengths.clamp(min=1)).float()
    log_odds = (avg_w - avg_l) - (log1mexp(avg_w) - log1mexp(avg_l))
    ratio = F.logsigmoid(log_odds)
    nll = batch_nll(prompt_logps + policy_chosen_logps, prompt_lengths + chosen_lengths)
    losses = nll - beta * ratio
    B = losses.shape[0]
    metrics = {"nll_loss": nll.detach().expand(B), "log_odds_ratio": ratio.detach(), "log_odds_chosen": log_odds.detach()}
    return LossOutput(losses, beta * avg_w.detach(), beta * avg_l.detach(), metrics)
