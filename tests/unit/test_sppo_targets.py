import torch

from podium.judging.base import win_probabilities
from podium.selfplay.targets import sppo_pair


def test_win_probabilities_worked_example():
    # Three responses; 0 beats 1 with 0.8 and 2 with 0.6, 1 beats 2 with 0.3.
    P = torch.tensor([[0.5, 0.8, 0.6], [0.2, 0.5, 0.3], [0.4, 0.7, 0.5]])
    # p_0 = (0.5 + 0.8 + 0.6) / 3 = 0.6333; p_1 = (0.2 + 0.5 + 0.3) / 3 = 0.3333; p_2 = 0.5333
    torch.testing.assert_close(win_probabilities(P), torch.tensor([0.63333, 0.33333, 0.53333]), rtol=0, atol=1e-4)
    pair = sppo_pair(P)
    assert pair["chosen_index"] == 0 and pair["rejected_index"] == 1
    assert abs(pair["chosen_prob"] - 0.6333) < 1e-4 and abs(pair["pair_prob"] - 0.8) < 1e-6


def test_diagonal_counts_as_half_whatever_the_judge_put_there():
    P = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(win_probabilities(P), torch.tensor([0.75, 0.25]))


def test_all_ties_give_no_pair():
    assert sppo_pair(torch.full((4, 4), 0.5)) is None


def test_gpo_scores():
    P = torch.tensor([[0.5, 0.9], [0.1, 0.5]])
    s = torch.tensor([[0.0, 2.0], [-2.0, 0.0]])
    pair = sppo_pair(P, s)
    assert pair["chosen_score"] == 1.0 and pair["rejected_score"] == -1.0
