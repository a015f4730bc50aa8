"""PairRM's aggregation and the SPPO code's use of it, worked by hand on fixed logit matrices.

C_ij is PairRM's one-direction logit ("i, shown first, beats j"; C_ii = 0). llm-blender's `rank(..., return_scores=True)`
aggregates s_i = mean_j (C_ij - C_ji) over all K (the zero diagonal counted); SPPO's scripts/compute_prob.py
sets P_ij = 1 / (1 + exp(s_j - s_i)), p_k = sum_j P_kj / K, chosen = argmax s, rejected = argmin s,
chosen_probs = P[chosen][rejected]. The expected numbers are worked in the docstrings; the oracle test
(tests/parity/test_pairrm_llm_blender.py) checks the same functions against llm-blender's own output.
"""

from __future__ import annotations

import math

import pytest
import torch

from podium.judging import PairwiseJudge, win_probabilities
from podium.judging.build import JudgeSpec, template_prompt
from podium.judging.pairrm import aggregate_scores, pairrm_judgement
from podium.models.tiny import build_tokenizer
from podium.selfplay.targets import sppo_pair


def transitive_logits():
    """The issue's worked example: C_ij = r_i - r_j with r = (1, 0.5, 0, -0.5, -1) (antisymmetric, no position bias)."""
    r = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0], dtype=torch.float64)
    return r[:, None] - r[None, :]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_sppo_mode_worked_example_0809_0191():
    """s_i = mean_j (C_ij - C_ji) = mean_j 2 (r_i - r_j) = 2 r_i (mean r = 0): s = (2, 1, 0, -1, -2).
    P_0j = sigma(2 - s_j) = sigma(0, 1, 2, 3, 4) = (0.5, 0.731059, 0.880797, 0.952574, 0.982014): p_0 = 4.046444 / 5
    = 0.809289; by symmetry p_4 = 0.190711. chosen_probs = P_04 = sigma(4) = 0.982014.
    """
    j = pairrm_judgement(transitive_logits())
    torch.testing.assert_close(j.response_scores, torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0], dtype=torch.float64))
    p = win_probabilities(j.matrix)
    assert p[0].item() == pytest.approx(0.809289, abs=1e-6) and p[4].item() == pytest.approx(0.190711, abs=1e-6)
    pair = sppo_pair(j.matrix, j.scores)
    assert (pair["chosen_index"], pair["rejected_index"]) == (0, 4)
    assert pair["chosen_prob"] == pytest.approx(0.809289, abs=1e-6)
    assert pair["rejected_prob"] == pytest.approx(0.190711, abs=1e-6)
    assert pair["pair_prob"] == pytest.approx(0.982014, abs=1e-6)


def test_the_zero_diagonal_counts_in_the_mean():
    """K = 2, C_01 = 3, C_10 = 1: s_0 = (0 + (3 - 1)) / 2 = 1, not 2 (llm-blender divides by K, self included)."""
    C = torch.tensor([[0.0, 3.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(aggregate_scores(C), torch.tensor([1.0, -1.0], dtype=torch.float64))
    assert pairrm_judgement(C).matrix[0, 1].item() == pytest.approx(sigmoid(2.0), abs=1e-6)


def test_symmetrised_one_direction_form_gives_the_issues_0710_0290():
    """The form the issue measured: P_ij = (sigma(C_ij) + 1 - sigma(C_ji)) / 2 on one-direction logits.

    With C antisymmetric that is sigma(r_i - r_j): P_0j = sigma(0, .5, 1, 1.5, 2) = (0.5, 0.622459, 0.731059,
    0.817574, 0.880797), p_0 = 3.551889 / 5 = 0.710378 and p_4 = 0.289622, 30% closer to 1/2 than SPPO's.
    """
    C = transitive_logits()
    names = ["r0", "r1", "r2", "r3", "r4"]
    P = PairwiseJudge(lambda q, a, b: sigmoid(C[names.index(a), names.index(b)].item())).preference_matrix("q", names).matrix
    p = win_probabilities(P)
    assert p[0].item() == pytest.approx(0.710378, abs=1e-6) and p[4].item() == pytest.approx(0.289622, abs=1e-6)


def test_pairwise_mode_agrees_on_a_transitive_pairrm():
    """pairrm_mode pairwise: P_ij = sigma(C_ij - C_ji) = sigma(2 (r_i - r_j)), the same P as SPPO's here."""
    j = pairrm_judgement(transitive_logits(), mode="pairwise")
    p = win_probabilities(j.matrix)
    assert p[0].item() == pytest.approx(0.809289, abs=1e-6) and p[4].item() == pytest.approx(0.190711, abs=1e-6)


def test_sppo_and_pairwise_differ_on_an_intransitive_pairrm_with_position_bias():
    """K = 3, D = C - C^T with D_01 = 2, D_02 = 0, D_12 = 2 (not r_i - r_j), C_ij = D_ij / 2 + 0.3 off the diagonal
    (a bias to whichever is shown first, which both forms cancel).

    SPPO: s = mean_j D_ij = (2/3, 0, -2/3); P_01 = P_12 = sigma(2/3) = 0.660756, P_02 = sigma(4/3) = 0.791391;
    p_0 = (0.5 + 0.660756 + 0.791391) / 3 = 0.650716, p_2 = 0.349284, chosen_probs = P_02 = 0.791391.
    pairwise: P_01 = P_12 = sigma(2) = 0.880797, P_02 = sigma(0) = 0.5; p_0 = 0.626932, p_2 = 0.373068.
    """
    D = torch.tensor([[0, 2, 0], [-2, 0, 2], [0, -2, 0]], dtype=torch.float64)
    C = (D / 2 + 0.3).fill_diagonal_(0.0)
    judged = pairrm_judgement(C)
    sppo = sppo_pair(judged.matrix, judged.scores)
    pw_judged = pairrm_judgement(C, mode="pairwise")
    pw = sppo_pair(pw_judged.matrix, pw_judged.scores)
    assert (sppo["chosen_index"], sppo["rejected_index"]) == (0, 2) == (pw["chosen_index"], pw["rejected_index"])
    assert sppo["chosen_prob"] == pytest.approx(0.650716, abs=1e-6)
    assert sppo["rejected_prob"] == pytest.approx(0.349284, abs=1e-6)
    assert sppo["pair_prob"] == pytest.approx(0.791391, abs=1e-6)
    assert pw["chosen_prob"] == pytest.approx(0.626932, abs=1e-6)
    assert pw["rejected_prob"] == pytest.approx(0.373068, abs=1e-6)
    assert pw["pair_prob"] == pytest.approx(0.5, abs=1e-6)


def test_sppo_matrix_is_a_tournament_from_scores():
    P = pairrm_judgement(transitive_logits()).matrix
    assert torch.equal(P.diagonal(), torch.full((5,), 0.5))
    torch.testing.assert_close(P + P.T, torch.ones(5, 5))


def test_ties_rank_the_first_of_equal_scores():
    """s = (1, 1, -2) (C_01 = C_10): chosen is response 0, as numpy's argmax in compute_prob.py; all equal: no pair."""
    C = torch.tensor([[0.0, 0.4, 1.5], [0.4, 0.0, 1.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    j = pairrm_judgement(C)
    assert j.response_scores[0] == j.response_scores[1]
    pair = sppo_pair(j.matrix, j.scores)
    assert (pair["chosen_index"], pair["rejected_index"]) == (0, 2)
    assert sppo_pair(*(lambda t: (t.matrix, t.scores))(pairrm_judgement(torch.zeros(3, 3)))) is None


def test_prompt_template_renders_as_sppos_rank_py():
    """rank.py's apply_template: the template of [user, assistant "None"] cut before the first "None" (the assistant
    header included); a prompt that itself says "None" is cut there too, as in the SPPO code."""
    tok = build_tokenizer()
    assert template_prompt(tok, "hi") == "<|user|>hi<|end|><|assistant|>"
    assert template_prompt(tok, [{"role": "user", "content": "hi"}]) == "<|user|>hi<|end|><|assistant|>"
    assert template_prompt(tok, "Return None when empty.") == "<|user|>Return "


def test_judge_spec_settings_belong_to_their_kind():
    with pytest.raises(ValueError, match="pairrm_mode is a setting of judge kind 'pairrm'"):
        JudgeSpec(kind="gpm", model="m", pairrm_mode="sppo")
    with pytest.raises(ValueError, match="gpm_probability"):
        JudgeSpec(kind="pairrm", gpm_probability="loss")
    with pytest.raises(ValueError, match="max_batch_tokens"):
        JudgeSpec(kind="reward", model="m", max_batch_tokens=4096)
