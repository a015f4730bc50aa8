"""Judges backed by a trained preference model: Bradley–Terry reward (K passes) and GPM (K passes)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from podium.judging.base import EMPTY, TOO_LONG, Judgement, empty_responses, matrix_from_scores
from podium.judging.pairs import encode, pad_batch
from podium.models.heads import gpm_score_matrix


class _ModelJudge:
    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.max_length = max_length or model.max_length

    def _encode(self, prompt, responses: Sequence[str]):
        """The K sequences in batches of `batch_size`, or a rejected Judgement naming the responses it cannot score."""
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        encoded = [encode(self.tokenizer, prompt, r) for r in responses]
        long = [i for i, (ids, _) in enumerate(encoded) if self.max_length and len(ids) > self.max_length]
        if long:
            return Judgement.rejected(long, TOO_LONG)
        return [pad_batch(self.tokenizer, [e[0] for e in chunk], [e[1] for e in chunk])
                for chunk in (encoded[s : s + self.batch_size] for s in range(0, len(encoded), self.batch_size))]


class RewardJudge(_ModelJudge):
    """P_ij = σ(r_i − r_j) from a `RewardModel` (one pass per response)."""

    @torch.no_grad()
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        batches = self._encode(prompt, responses)
        if isinstance(batches, Judgement):
            return batches
        r = torch.cat([self.model(b["input_ids"], b["attention_mask"], b["prompt_lengths"]).float() for b in batches])
        return Judgement(matrix_from_scores(r))


class GPMJudge(_ModelJudge):
    """P_ij = σ(s(i ≻ j)/τ) from a `GPMModel`: K embeddings, all K² scores from them.

    With gates, λ(x) is read from the first response's pass (all rows share the prompt).
    """

    @torch.no_grad()
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        batches = self._encode(prompt, responses)
        if isinstance(batches, Judgement):
            return batches
        outs = [self.model(b["input_ids"], b["attention_mask"], b["prompt_lengths"]) for b in batches]
        v = torch.cat([o[0] for o in outs]).float()
        lambdas = None if outs[0][1] is None else outs[0][1][0].float()
        S = gpm_score_matrix(v, lambdas)
        return Judgement(torch.sigmoid(S / self.model.tau).fill_diagonal_(0.5), scores=S)
