"""Verifier judge: a task checker decides; correct beats wrong, equal correctness ties."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from podium.judging.base import EMPTY, Judgement, empty_responses


class VerifierJudge:
    """P_ij = 1 if i is correct and j wrong, 0 for the reverse, 1/2 if both agree.

    `check(response) -> bool` is the task checker for this prompt's answer; pass `check_for` instead
    to build the checker from the prompt (e.g. `lambda prompt: partial(task.check, answer=...)`).
    Example: correctness [1, 0, 1] gives rows [.5, 1, .5], [0, .5, 0], [.5, 1, .5]
    and win probabilities [2/3, 1/6, 2/3].
    """

    def __init__(self, check: Callable[[str], bool] | None = None,
                 check_for: Callable[[object], Callable[[str], bool]] | None = None):
        if (check is None) == (check_for is None):
            raise ValueError("give exactly one of check, check_for")
        self.check, self.check_for = check, check_for

    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        check = self.check or self.check_for(prompt)
        c = torch.tensor([float(bool(check(r))) for r in responses])
        # (c_i − c_j + 1)/2 ∈ {0, 1/2, 1}
        return Judgement((c[:, None] - c[None, :] + 1) / 2, response_scores=c)
