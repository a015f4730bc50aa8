"""The SFT term of TRL's DPO family: the chosen responses' negative log-likelihood, a token mean over the batch.

TRL 1.16's ``loss_type="sft"`` (RPO is ``["sigmoid", "sft"]``, MPO ``["sigmoid", "bco_pair", "sft"]``):
-sum of every chosen token's log-prob / number of chosen tokens, over the whole (micro-)batch. It is
one number per batch; podium repeats it for each pair so that the loop's sum over pairs divided by B
gives it back. (:func:`podium.losses.dpo.rpo_loss` is the per-pair variant.) It needs no reference model.
"""

from __future__ import annotations

from torch import Tensor

from podium.losses.output import LossOutput


def batch_nll(logps: Tensor, lengths: Tensor) -> Tensor:
    """-sum(logps) / sum(lengths): the mean NLL per token over a batch of sequences (scalar).

    ``logps`` [B] are summed token log-probs, ``lengths`` [B] their token counts. 0 when no token.
    """
    return -logps.sum() / lengths.sum().clamp(min=1)


def sft_loss(nll_chosen_logps: Tensor, chosen_lengths: Tensor) -> LossOutput:
    """NLL of the chosen responses, token mean over the batch, repeated [B]; no rewards.

    ``nll_chosen_logps`` [B]: summed log-probs of every chosen token (never length-desensitised: under
    ``ld_alpha`` TRL's sft term reads the plain per-token log-probs too). ``chosen_lengths`` [B].
    """
    nll = batch_nll(nll_chosen_logps, chosen_lengths)
    return LossOutput(nll.expand(nll_chosen_logps.shape[0]), None, None)
