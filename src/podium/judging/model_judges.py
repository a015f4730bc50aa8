"""Judges backed by a trained preference model: Bradley–Terry reward (K passes) and GPM (K passes)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from podium.data.response_batches import encode_response, pad_responses
from podium.judging.base import EMPTY, TOO_LONG, Judgement, empty_responses, matrix_from_scores
from podium.losses.gpm import GPM_PROBABILITIES, gpm_logit_matrix


class _ModelJudge:
    """`encode(tokenizer, prompt, response) -> (ids, prompt_tokens)` renders one sequence: podium's
    `encode_response` for its own models, `podium.models.preference_folders.encode_released` for the
    GPM code's checkpoints."""

    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 64, *,
                 encode=encode_response):
        self.model, self.tokenizer, self.batch_size, self.encode = model.eval(), tokenizer, batch_size, encode
        self.max_length = max_length or model.max_length

    def _encode(self, prompt, responses: Sequence[str]):
        """The K sequences in batches of `batch_size`, or a rejected Judgement naming the responses it cannot score."""
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        encoded = [self.encode(self.tokenizer, prompt, r) for r in responses]
        long = [i for i, (ids, _) in enumerate(encoded) if self.max_length and len(ids) > self.max_length]
        if long:
            return Judgement.rejected(long, TOO_LONG)
        return [pad_responses(self.tokenizer.pad_token_id, [e[0] for e in chunk], [e[1] for e in chunk])
                for chunk in (encoded[s : s + self.batch_size] for s in range(0, len(encoded), self.batch_size))]


class RewardJudge(_ModelJudge):
    """P_ij = σ(r_i − r_j) from a `RewardModel` (one pass per response)."""

    @torch.no_grad()
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        batches = self._encode(prompt, responses)
        if isinstance(batches, Judgement):
            return batches
        r = torch.cat([self.model(b["input_ids"], b["attention_mask"], b["prompt_lengths"]).float() for b in batches])
        return Judgement(matrix_from_scores(r), response_scores=r)


class GPMJudge(_ModelJudge):
    """P_ij = sigma(L_ij) from a `GPMModel`: K embeddings, all K^2 logits from them (K passes).

    ``probability`` (`podium.losses.gpm.gpm_logit_matrix`): "released" (default), the GPM code's
    self-play convention L_ij = (s_ij - s_ji)/tau = 2 s_ij/tau; "loss", L_ij = s_ij/tau, the
    probability the GPM loss fits. ``tau`` None: the model's. The judgement's ``scores`` are L;
    GPO's targets are their row means. With gates, lambda(x) is read from the first response's pass
    (all rows share the prompt).
    """

    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 64, *,
                 encode=encode_response, probability: str = "released", tau: float | None = None):
        super().__init__(model, tokenizer, max_length, batch_size, encode=encode)
        if probability not in GPM_PROBABILITIES:
            raise ValueError(f"GPM probability must be one of {GPM_PROBABILITIES}, got {probability!r}")
        self.probability, self.tau = probability, tau

    @torch.no_grad()
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        batches = self._encode(prompt, responses)
        if isinstance(batches, Judgement):
            return batches
        outs = [self.model(b["input_ids"], b["attention_mask"], b["prompt_lengths"]) for b in batches]
        v = torch.cat([o[0] for o in outs]).float()
        lambdas = None if outs[0][1] is None else outs[0][1][0].float()
        L = gpm_logit_matrix(v, lambdas, self.tau or self.model.tau, probability=self.probability)
        return Judgement(torch.sigmoid(L).fill_diagonal_(0.5), scores=L, response_scores=L.mean(dim=1))
