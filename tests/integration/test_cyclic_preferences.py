"""GPM paper's cyclic-preference result at toy scale (Zhang et al. 2024, arXiv:2410.02197).

On rock ≻ scissors ≻ paper ≻ rock, a GPM reaches ≥ 95% held-out pair accuracy; a Bradley–Terry
reward model on the same pairs and the same backbone stays ≤ 70% (a scalar orders at most two of
the three relations, 66.7%). ~30 s on one CPU core.
"""

import pytest
import torch

from podium.judging.cyclic import run_cyclic

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_gpm_learns_the_cycle_and_bradley_terry_cannot():
    gpm = run_cyclic("gpm", steps=200, eval_every=100)
    bt = run_cyclic("reward", steps=200, eval_every=100)
    assert gpm["accuracy"] >= 0.95, gpm["curve"]
    assert bt["accuracy"] <= 0.70, bt["curve"]


def test_trained_gpm_judge_ranks_the_cycle_as_a_tie(tmp_path):
    """Through the judge interface each type wins once and loses once: win probabilities ≈ 1/2."""
    from podium.judging import GPMJudge, win_probabilities

    gpm = run_cyclic("gpm", steps=200, eval_every=200)
    judge = GPMJudge(gpm["model"], gpm["tokenizer"])
    P = judge.preference_matrix("pick zzzz", ["rock abc", "paper abc", "scissors abc"]).matrix
    assert P[0, 2] > 0.9 and P[2, 1] > 0.9 and P[1, 0] > 0.9  # rock ≻ scissors ≻ paper ≻ rock
    assert torch.allclose(win_probabilities(P), torch.full((3,), 0.5), atol=0.05)
