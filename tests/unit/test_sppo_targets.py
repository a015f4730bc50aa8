import pytest
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
    pair = sppo_pair(P, s, gpo=True)
    assert pair["chosen_score"] == 1.0 and pair["rejected_score"] == -1.0


def test_gpo_targets_on_the_gpm_codes_scale():
    """k = 1, v = (1, 0), (0, 1), (0.6, 0.8), tau = 0.1: s(i > j) = a_i b_j - a_j b_i gives s01 = 1, s02 = 0.8,
    s12 = -0.6. The GPM code's table S = s / tau and its GPO target (compute_score_from_raw.py) is
    mean_j (S_ij - S_ji) = mean_j 20 s_ij: s_hat = ((20 + 16) / 3, (-20 - 12) / 3, (-16 + 12) / 3) = (12, -10.6667, -1.3333),
    20x the raw mean score (0.6, -0.5333, -0.0667). Chosen 0, rejected 1.
    """
    from podium.losses.gpm import gpm_logit_matrix

    V = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    L = gpm_logit_matrix(V, tau=0.1)
    pair = sppo_pair(torch.sigmoid(L).fill_diagonal_(0.5), L, gpo=True)
    assert (pair["chosen_index"], pair["rejected_index"]) == (0, 1)
    assert pair["chosen_score"] == pytest.approx(12.0, abs=1e-5)
    assert pair["rejected_score"] == pytest.approx(-32 / 3, abs=1e-5)
    raw = gpm_logit_matrix(V, tau=0.1, probability="loss") * 0.1  # s itself
    assert pair["chosen_score"] == pytest.approx(20 * raw[0].mean().item(), abs=1e-5)


def test_judge_logits_rank_the_responses_as_the_reference_code():
    """The reference code picks chosen/rejected by the aggregate score (argmax/argmin of rm_scores), here the row
    means of the logits L, not by the win probabilities p = row means of sigma(L) (self 1/2). They differ for an
    intransitive judge: L rows A (0, 20, -3, -3), B (-20, 0, 1, 1), C (3, -1, 0, .5), D (3, -1, -.5, 0).
    Means of L: (3.5, -4.5, 0.625, 0.375) -> chosen A, rejected B. p: A = (.5 + 1 + 2 x 0.047426) / 4 = 0.398713,
    B = (0 + .5 + 2 x 0.731059) / 4 = 0.490529, C = 0.585994, D = 0.524764 (by p it would be C and A).
    """
    L = torch.tensor([[0, 20, -3, -3], [-20, 0, 1, 1], [3, -1, 0, 0.5], [3, -1, -0.5, 0]], dtype=torch.float64)
    P = torch.sigmoid(L).fill_diagonal_(0.5)
    pair = sppo_pair(P, L)
    assert (pair["chosen_index"], pair["rejected_index"]) == (0, 1)
    assert pair["chosen_prob"] == pytest.approx(0.398713, abs=1e-6)
    assert pair["rejected_prob"] == pytest.approx(0.490529, abs=1e-6)
    assert "chosen_score" not in pair  # GPO targets only when asked (objective gpo)
    by_p = sppo_pair(P)
    assert (by_p["chosen_index"], by_p["rejected_index"]) == (2, 0)


def test_gpo_without_logits_is_a_config_error():
    from podium.errors import ConfigError

    with pytest.raises(ConfigError, match="judge kind 'gpm'"):
        sppo_pair(torch.tensor([[0.5, 0.9], [0.1, 0.5]]), None, gpo=True)
