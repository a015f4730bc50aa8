"""The judge interface: a prompt and K responses in, a K×K preference matrix out.

P_ij = P(response i beats response j), P_ii = 1/2; win probabilities are row means with the
self-comparison counted as 1/2 (docs/DESIGN.md "Self-play"; Wu et al. 2024, SPPO, §4).

A response a judge cannot score (empty text, too long for its model) invalidates the whole
prompt: the judgement comes back with `valid=False`, the indices and a reason, and no matrix.
Scoring it 1/2 would silently pull its row towards a tie; callers drop the prompt and count it
(`judge_prompts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

EMPTY = "empty response"
TOO_LONG = "too long"


@dataclass
class Judgement:
    """A judge's verdict on one prompt's K responses; `matrix` [K, K] only when `valid`."""

    matrix: torch.Tensor | None
    valid: bool = True
    scores: torch.Tensor | None = None  # preference logits L_ij = log(P_ij/P_ji) [K, K] (GPM judges; GPO targets: row means)
    reason: str | None = None
    invalid: list[int] = field(default_factory=list)
    # The judge's own per-response scores [K]: PairRM's aggregated s, a reward model's r, a GPM's row-mean logit.
    response_scores: torch.Tensor | None = None

    @classmethod
    def rejected(cls, invalid: list[int], reason: str) -> Judgement:
        return cls(matrix=None, valid=False, reason=reason, invalid=invalid)


class Judge(Protocol):
    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement: ...


def empty_responses(responses: Sequence[str]) -> list[int]:
    """Indices of responses with no visible text."""
    return [i for i, r in enumerate(responses) if not isinstance(r, str) or not r.strip()]


def win_probabilities(P: torch.Tensor) -> torch.Tensor:
    """p_k = mean_j P_kj over all K responses, self counted as 1/2. P [K, K] -> [K].

    SPPO's estimate of P(y_k ≻ π_t | x) from K samples of π_t (Wu et al. 2024, §4).
    """
    P = P.clone().float()
    P.fill_diagonal_(0.5)
    return P.mean(dim=1)


def matrix_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry matrix P_ij = σ(r_i − r_j). [K] -> [K, K], diagonal exactly 1/2."""
    P = torch.sigmoid(scores[:, None] - scores[None, :])
    return P.fill_diagonal_(0.5)


@dataclass
class JudgeReport:
    """Valid judgements (by prompt index) and the count of dropped prompts per reason."""

    judgements: dict[int, Judgement]
    dropped: Counter

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def judge_prompts(judge: Judge, prompts: Sequence, responses: Sequence[Sequence[str]]) -> JudgeReport:
    """Judge each prompt's responses; invalid prompts are dropped and counted by reason."""
    kept, dropped = {}, Counter()
    for i, (prompt, resp) in enumerate(zip(prompts, responses, strict=True)):
        j = judge.preference_matrix(prompt, resp)
        if j.valid:
            kept[i] = j
        else:
            dropped[j.reason] += 1
    return JudgeReport(kept, dropped)
