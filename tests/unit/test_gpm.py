"""GPM score math: worked example, skew-symmetry, zero self-score, gates as block scales."""

import torch

from podium.losses.gpm import gpm_score, gpm_score_matrix


def test_worked_example_one_block():
    """v_i = (1, 0), v_j = (0, 1): R v_i = (−0, 1) = (0, 1), ⟨R v_i, v_j⟩ = 1; s(j ≻ i) = −1."""
    vi, vj = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert gpm_score(vi, vj).item() == 1.0
    assert gpm_score(vj, vi).item() == -1.0


def test_worked_example_two_blocks_with_lambdas():
    """Blocks (a, b): v_i = (1, 0 | 0.6, 0.8), v_j = (0.6, 0.8 | 1, 0), λ = (2, 0.5).

    block 1: a_i b_j − b_i a_j = 1·0.8 − 0·0.6 = 0.8; block 2: 0.6·0 − 0.8·1 = −0.8.
    On raw vectors s = 2·0.8 + 0.5·(−0.8) = 1.2; the score L2-normalises v first (|v| = √2 for
    both), which scales every product by 1/2: s = 0.6.
    """
    vi = torch.tensor([1.0, 0.0, 0.6, 0.8])
    vj = torch.tensor([0.6, 0.8, 1.0, 0.0])
    assert torch.isclose(gpm_score(vi, vj, torch.tensor([2.0, 0.5])), torch.tensor(0.6))


def test_matches_explicit_block_operator():
    torch.manual_seed(0)
    k = 3
    v = torch.nn.functional.normalize(torch.randn(5, 2 * k), dim=-1)
    lam = torch.rand(k) + 0.1
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    R = torch.block_diag(*[lam[i] * J for i in range(k)])
    expected = (v @ R.T) @ v.T  # [i, j] = ⟨R v_i, v_j⟩
    assert torch.allclose(gpm_score_matrix(v, lam), expected, atol=1e-6)


def test_skew_symmetry_and_zero_diagonal():
    torch.manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    S = gpm_score_matrix(v, torch.rand(4))
    assert torch.allclose(S, -S.T, atol=1e-7)
    assert (S.diagonal() == 0).all()


def test_cycle_is_representable():
    """Three unit vectors 120° apart in one block give s > 0 around the cycle 0 ≻ 1 ≻ 2 ≻ 0."""
    angles = torch.tensor([0.0, 2.0944, 4.1888])  # s(i ≻ j) = sin(θ_j − θ_i)
    v = torch.stack([angles.cos(), angles.sin()], -1)
    S = gpm_score_matrix(v)
    assert S[0, 1] > 0.8 and S[1, 2] > 0.8 and S[2, 0] > 0.8
