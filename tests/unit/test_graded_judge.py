"""The graded task judge: partial credit by digits, turned into preference probabilities as PairRM's scores are."""

import math

import pytest
import torch

from podium.errors import ConfigError
from podium.judging.base import win_probabilities
from podium.judging.build import JudgeSpec, build_judge
from podium.tasks import get_task

PROMPT = [{"role": "user", "content": "What is 40 + 45?"}]


@pytest.mark.parametrize(("response", "credit"), [
    ("40 + 45 = 85", 1.0), ("85", 1.0), ("40 + 45 = 83", 0.5), ("40 + 45 = 185", 2 / 3), ("40 + 45 = -85", 2 / 3),
    ("40 + 45 = 7", 0.0), ("no idea", 0.0), ("40 + 45 = 58", 0.0), ("40 + 45 = 1,085", 0.5),
])
def test_arithmetic_credit_by_digits(response, credit):
    """Right-aligned characters of the last number against the gold "85": "83" keeps the tens (1 of 2), "185" both
    digits of 3 characters, "-85" the same, "58" none, "1085" (separators dropped) the units and tens of 4."""
    arithmetic = get_task("arithmetic")
    assert arithmetic.credit(response, "85") == pytest.approx(credit)
    assert (arithmetic.credit(response, "85") == 1.0) == arithmetic.check(response, "85")


def test_graded_matrix_worked_example():
    """Credits [1, ½, 0] at τ = 0.25: P_01 = σ(2) = 0.880797, P_02 = σ(4) = 0.982014, P_12 = σ(2); rows sum with
    P_ji = 1 − P_ij; win probabilities (self ½): p_0 = (½ + 0.880797 + 0.982014)/3 = 0.787604,
    p_1 = (0.119203 + ½ + 0.880797)/3 = ½, p_2 = (0.017986 + 0.119203 + ½)/3 = 0.212396."""
    judge = build_judge(JudgeSpec(kind="graded", tau=0.25))
    j = judge.judge(PROMPT, ["40 + 45 = 85", "40 + 45 = 83", "40 + 45 = 12"], answer="85", task="arithmetic")
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = torch.tensor([[0.5, s(2), s(4)], [s(-2), 0.5, s(2)], [s(-4), s(-2), 0.5]])
    assert torch.allclose(j.matrix, expected, atol=1e-6)
    assert torch.allclose(win_probabilities(j.matrix), torch.tensor([0.787604, 0.5, 0.212396]), atol=1e-6)
    assert torch.allclose(j.scores, torch.tensor([[0.0, 2, 4], [-2, 0, 2], [-4, -2, 0]]), atol=1e-6)


def test_graded_judge_ranks_two_misses_where_the_verifier_ties():
    responses = ["40 + 45 = 83", "40 + 45 = 12"]
    verifier = build_judge(JudgeSpec(kind="verifier")).judge(PROMPT, responses, answer="85", task="arithmetic")
    graded = build_judge(JudgeSpec(kind="graded")).judge(PROMPT, responses, answer="85", task="arithmetic")
    assert verifier.matrix[0, 1] == 0.5 and graded.matrix[0, 1] > 0.8
    # A small τ is the verifier on a right and a wrong answer.
    sharp = build_judge(JudgeSpec(kind="graded", tau=0.01)).judge(PROMPT, ["85", "83"], answer="85", task="arithmetic")
    assert sharp.matrix[0, 1] == pytest.approx(1.0, abs=1e-12)


def test_graded_judge_settings_and_errors():
    with pytest.raises(ConfigError, match="needs prompts with gold"):
        build_judge(JudgeSpec(kind="graded")).judge(PROMPT, ["1", "2"])
    empty = build_judge(JudgeSpec(kind="graded")).judge(PROMPT, ["85", " "], answer="85", task="arithmetic")
    assert not empty.valid and empty.invalid == [1]
    with pytest.raises(ValueError, match="pairrm_mode is a setting of judge kind 'pairrm'"):
        JudgeSpec(kind="graded", pairrm_mode="sppo")
    with pytest.raises(ValueError, match="tau is a setting of judge kind 'gpm'"):
        JudgeSpec(kind="verifier", tau=0.5)
