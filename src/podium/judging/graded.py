"""Graded task judge: partial credit turned into preference probabilities, as PairRM's scores are.

A verifier's P_ij is 1, 0 or 1/2: two wrong answers tie, so a prompt the policy never solves gives
self-play no pair, and SPPO's soft targets η(P̂ − ½) see only the few values K correct-or-wrong samples
can make. PairRM, the judge of the SPPO paper, instead scores every response and its P_ij = σ(s_i − s_j)
(the SPPO code's compute_prob.py) is soft and prefers a nearer miss. The graded judge does the same with
a task's partial credit c ∈ [0, 1] (`TaskFamily.credit`, e.g. arithmetic's share of right digits):

    P_ij = σ((c_i − c_j) / τ),       L_ij = log(P_ij / P_ji) = (c_i − c_j) / τ

so a right answer beats a one-digit miss (Δc = ½) with σ(½τ⁻¹) (0.88 at τ = 0.25), and a one-digit miss
beats an answer with no right digit by as much. τ → 0 recovers the verifier on correct-vs-wrong pairs
(and ranks wrong answers among themselves). Tasks whose truth is a preference (`pairwise`, e.g. rps)
are judged by it, as the verifier does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from podium.judging.base import EMPTY, Judgement, empty_responses
from podium.judging.pairwise import PairwiseJudge
from podium.tasks import get_task

DEFAULT_TAU = 0.25


def graded_matrix(credits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`(P, L)` from credits [K]: P_ij = σ((c_i − c_j)/τ) [K, K] with diagonal ½, and the logits L_ij."""
    logits = (credits[:, None] - credits[None, :]) / tau
    return torch.sigmoid(logits).fill_diagonal_(0.5), logits


def judge_graded(prompt, responses: Sequence[str], answer: str, task: str, tau: float = DEFAULT_TAU) -> Judgement:
    """The graded judgement of one prompt's responses against its gold `answer` under `task`'s credit."""
    family = get_task(task)
    if family.pairwise:
        return PairwiseJudge(lambda p, a, b: family.prefer(a, b)).preference_matrix(prompt, responses)
    empty = empty_responses(responses)
    if empty:
        return Judgement.rejected(empty, EMPTY)
    credits = torch.tensor([family.credit(r, answer) for r in responses], dtype=torch.float64)
    P, L = graded_matrix(credits, tau)
    return Judgement(P.float(), scores=L.float())
