"""Pairwise judges: any scorer f(prompt, a, b) -> P(a ≻ b), K(K−1) comparisons per prompt.

`ConcatPairScorer` turns a scalar model over the concatenated pair into a pairwise scorer (the
same-size baseline of benchmarks/judge_cost.py). PairRM, the SPPO paper's pairwise judge, has its own
module: `podium.judging.pairrm`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from podium.data.response_batches import encode_response, pad_responses
from podium.judging.base import EMPTY, TOO_LONG, Judgement, empty_responses


def ordered_pairs(k: int) -> list[tuple[int, int]]:
    """All (i, j) with i ≠ j, row-major: K(K−1) pairs."""
    return [(i, j) for i in range(k) for j in range(k) if i != j]


def matrix_from_pairwise(k: int, pairs: list[tuple[int, int]], probs: torch.Tensor,
                         symmetrize: bool) -> torch.Tensor:
    """Fill P from ordered-pair probabilities; symmetrize: P_ij = (f(i,j) + 1 − f(j,i))/2.

    Symmetrising removes position bias, so that P_ij + P_ji = 1 as for the other judges.
    """
    F = torch.full((k, k), 0.5)
    for (i, j), p in zip(pairs, probs.tolist()):
        F[i, j] = p
    P = (F + 1 - F.T) / 2 if symmetrize else F
    return P.fill_diagonal_(0.5)


class PairwiseJudge:
    """K(K−1) calls to `scorer(prompt, a, b) -> P(a ≻ b)` (or one call with lists when `batched`)."""

    def __init__(self, scorer: Callable, *, batched: bool = False, symmetrize: bool = True):
        self.scorer, self.batched, self.symmetrize = scorer, batched, symmetrize

    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        k = len(responses)
        pairs = ordered_pairs(k)
        if self.batched:
            out = self.scorer(prompt, [responses[i] for i, _ in pairs], [responses[j] for _, j in pairs])
            if isinstance(out, Judgement):  # the scorer found a response it cannot score
                return out
            probs = torch.as_tensor(out, dtype=torch.float32)
        else:
            probs = torch.tensor([float(self.scorer(prompt, responses[i], responses[j])) for i, j in pairs])
        if not ((probs >= 0) & (probs <= 1)).all():
            raise ValueError(f"pairwise scorer must return probabilities in [0, 1], got {probs.tolist()}")
        return Judgement(matrix_from_pairwise(k, pairs, probs, self.symmetrize))


class ConcatPairScorer:
    """P(a ≻ b) = σ(r(x, "[A] a [B] b")) from a scalar `RewardModel`; one backbone pass per pair.

    Batched form for `PairwiseJudge(batched=True)`: scorer(prompt, list_a, list_b) -> [N].
    `batch_size` bounds the number of pair sequences per forward pass.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, max_length: int | None = None):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.max_length = max_length or model.max_length

    @torch.no_grad()
    def __call__(self, prompt, list_a: Sequence[str], list_b: Sequence[str]):
        encoded = [encode_response(self.tokenizer, prompt, f"[A] {a}\n[B] {b}") for a, b in zip(list_a, list_b)]
        if self.max_length and any(len(ids) > self.max_length for ids, _ in encoded):
            return Judgement.rejected([], TOO_LONG)
        out = []
        for s in range(0, len(encoded), self.batch_size):
            chunk = encoded[s : s + self.batch_size]
            b = pad_responses(self.tokenizer.pad_token_id, [e[0] for e in chunk], [e[1] for e in chunk])
            out.append(torch.sigmoid(self.model(b["input_ids"], b["attention_mask"], b["prompt_lengths"]).float()))
        return torch.cat(out)
