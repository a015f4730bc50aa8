"""Judges backed by a trained preference model: Bradley–Terry reward (K passes) and GPM (K passes)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from podium.judging.base import EMPTY, TOO_LONG, Judgement, empty_responses, matrix_from_scores
from podium.judging.pairs import encode, pad_batch
from podium.models.heads import gpm_score_matrix


class _ModelJudge:
    def __init__(self, model, tokenizer, max_length: int | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length = max_length or model.max_length

    def _encode(self, prompt, responses: Sequence[str]):
        """One batch of K sequences, or a rejected Judgement naming the responses it cannot score."""
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        encoded = [encode(self.tokenizer, prompt, r) for r in responses]
        long = [i for i, (ids, _) in enumerate(encoded) if self.max_length and len(ids) > self.max_length]
        if long:
            return Judgement.rejected(long, TOO_LONG)
        return pad_batch(self.tokenizer, [e[0] for e in encoded], [e[1] for e in encoded])


class RewardJudge(_ModelJudge):
    """P_ij = σ(r_i − r_j) from a `RewardModel` (one pass per response)."""

    @torch.no_grad()
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        batch = self._encode(prompt, responses)
        if isinstance(batch, Judgement):
            return batch
        r = self.model(batch["input_ids"], batch["attention_mask"]).float()
        return Judgement(matrix_from_scores(r))


class GPMJudge(_ModelJudge):
    """P_ij = σ(s(i ≻ j)/τ) from a `GPMModel`: K embeddings, all K² scores from them.

    With gates, λ(x) is read from the first response's pass (all rows share the prompt).
    """

    @torch.no_grad()
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        batch = self._encode(prompt, responses)
        if isinstance(batch, Judgement):
            return batch
        v, lambdas = self.model(batch["input_ids"], batch["attention_mask"], batch["prompt_lengths"])
        S = gpm_score_matrix(v.float(), None if lambdas is None else lambdas[0].float())
        return Judgement(torch.sigmoid(S / self.model.tau).fill_diagonal_(0.5))
