"""Worked examples: each expected number is computed by hand in the test's docstring."""

import math

import pytest
import torch

from podium.losses import (
    bradley_terry_loss,
    dpo_loss,
    dpop_loss,
    gpm_loss,
    gpm_preference_matrix,
    gpm_score,
    gpo_loss,
    hinge_loss,
    ipo_loss,
    rpo_loss,
    sppo_hard_loss,
    sppo_loss,
    sppo_single_loss,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


# policy chosen -10, rejected -14; reference chosen -12, rejected -12  =>  rho_w = 2, rho_l = -2, Delta = 4
PAIR = (t(-10.0), t(-14.0), t(-12.0), t(-12.0))


def close(actual, expected, tol=1e-6):
    assert actual.shape == (1,)
    assert actual.item() == pytest.approx(expected, abs=tol)


def test_dpo_worked_example():
    """beta = 0.1: beta * Delta = 0.4; loss = -log sigma(0.4) = log(1 + e^-0.4) = log(1.670320) = 0.513015.

    Rewards: beta * rho = (0.2, -0.2).
    """
    out = dpo_loss(*PAIR, beta=0.1)
    close(out.losses, 0.513015)
    close(out.chosen_rewards, 0.2)
    close(out.rejected_rewards, -0.2)


def test_cdpo_worked_example():
    """eps = 0.1: 0.9 * log(1 + e^-0.4) + 0.1 * log(1 + e^0.4).

    log(1 + e^0.4) = 0.4 + log(1 + e^-0.4) = 0.913015, so the loss = 0.461714 + 0.091302 = 0.553015.
    """
    close(dpo_loss(*PAIR, beta=0.1, label_smoothing=0.1).losses, 0.553015)


def test_dpop_worked_example():
    """beta = 0.1, lambda = 50; policy (-13, -15), reference (-12, -12): rho_w = -1, rho_l = -3, Delta = 2.

    Penalty max(0, -rho_w) = 1; logit = 0.1 * (2 - 50 * 1) = -4.8;
    loss = log(1 + e^4.8) = 4.8 + log(1 + e^-4.8) = 4.8 + log(1.0082297) = 4.8 + 0.0081961 = 4.8081961.
    Plain DPO on the same pair: log(1 + e^-0.2) = log(1.8187308) = 0.5981389.
    """
    pair = (t(-13.0), t(-15.0), t(-12.0), t(-12.0))
    out = dpop_loss(*pair, beta=0.1, lambda_=50.0)
    close(out.losses, 4.8081961)
    close(out.chosen_rewards, -0.1)
    close(out.rejected_rewards, -0.3)
    close(dpop_loss(*pair, beta=0.1, lambda_=0.0).losses, 0.5981389)
    # rho_w = 2 > 0: no penalty whatever lambda is, the loss is DPO's 0.513015
    close(dpop_loss(*PAIR, beta=0.1, lambda_=50.0).losses, 0.513015)


def test_ipo_worked_example():
    """beta = 0.1 => 1/(2 beta) = 5; |y_w| = 4, |y_l| = 2: 2/4 - (-2)/2 = 1.5; loss = (1.5 - 5)^2 = 12.25."""
    out = ipo_loss(*PAIR, chosen_lengths=torch.tensor([4]), rejected_lengths=torch.tensor([2]), beta=0.1)
    close(out.losses, 12.25)
    close(out.chosen_rewards, 0.2)


def test_hinge_worked_example():
    """beta = 0.1: relu(1 - 0.1 * 4) = 0.6; with Delta = 20 (policy chosen 0): relu(1 - 2) = 0."""
    close(hinge_loss(*PAIR, beta=0.1).losses, 0.6)
    close(hinge_loss(t(6.0), t(-14.0), t(-12.0), t(-12.0), beta=0.1).losses, 0.0)


def test_rpo_worked_example():
    """DPO 0.513015 + alpha * NLL; NLL = 10 / 5 tokens = 2: alpha = 1 gives 2.513015, alpha = 0.5 1.513015."""
    lengths = torch.tensor([5])
    close(rpo_loss(*PAIR, chosen_lengths=lengths, beta=0.1, alpha=1.0).losses, 2.513015)
    close(rpo_loss(*PAIR, chosen_lengths=lengths, beta=0.1, alpha=0.5).losses, 1.513015)


def test_sppo_soft_worked_example():
    """beta = 0.01 => eta = 100; p_w = 0.8, p_l = 0.3: targets 30 and -20.

    loss = (2 - 30)^2 + (-2 + 20)^2 = 784 + 324 = 1108; rewards 0.01 * (2, -2) = (0.02, -0.02).
    """
    out = sppo_loss(*PAIR, chosen_prob=t(0.8), rejected_prob=t(0.3), beta=0.01)
    close(out.losses, 1108.0, tol=1e-9)
    close(out.chosen_rewards, 0.02)
    close(out.rejected_rewards, -0.02)


def test_sppo_single_worked_example():
    """p = P(w > l) = 0.7 => p_w = 0.7, p_l = 0.3; eta = 100: (2 - 20)^2 + (-2 + 20)^2 = 324 + 324 = 648."""
    close(sppo_single_loss(*PAIR, pair_prob=t(0.7), beta=0.01).losses, 648.0, tol=1e-9)


def test_sppo_hard_worked_example():
    """eta / 2 = 50: (2 - 50)^2 + (-2 + 50)^2 = 2304 + 2304 = 4608."""
    close(sppo_hard_loss(*PAIR, beta=0.01).losses, 4608.0, tol=1e-9)


def test_gpo_worked_example():
    """eta = 100, s_w = 0.25, s_l = -0.1: targets 25, -10; (2 - 25)^2 + (-2 + 10)^2 = 529 + 64 = 593."""
    close(gpo_loss(*PAIR, chosen_score=t(0.25), rejected_score=t(-0.1), beta=0.01).losses, 593.0, tol=1e-9)


def test_bradley_terry_worked_example():
    """r_w = 1.5, r_l = 0.5: log(1 + e^-1) = log(1.3678794) = 0.3132617; with margin 1: log 2 = 0.6931472."""
    out = bradley_terry_loss(t(1.5), t(0.5))
    close(out.losses, 0.3132617)
    close(out.chosen_rewards, 1.5)
    close(bradley_terry_loss(t(1.5), t(0.5), margin=t(1.0)).losses, math.log(2))


def test_gpm_worked_example():
    """k = 2, v_w = (0.6, 0, 0.8, 0), v_l = (0, 0.6, 0, -0.8) (unit), gates (1, 0.25).

    s = 1 * (0.6 * 0.6 - 0 * 0) + 0.25 * (0.8 * -0.8 - 0 * 0) = 0.36 - 0.16 = 0.2;
    tau = 0.1: logit 2, loss = log(1 + e^-2) = log(1.1353353) = 0.1269280; rewards +-1.
    Scaling the inputs (x3, x2) changes nothing: they are L2-normalised first.
    """
    v_w, v_l = t(0.6, 0.0, 0.8, 0.0)[None], t(0.0, 0.6, 0.0, -0.8)[None]
    gates = t(1.0, 0.25)
    close(gpm_score(v_w, v_l, gates), 0.2)
    out = gpm_loss(3 * v_w, 2 * v_l, lambdas=gates, tau=0.1)
    close(out.losses, 0.1269280)
    close(out.chosen_rewards, 1.0)
    close(out.rejected_rewards, -1.0)


def test_gpm_cyclic_preference_matrix():
    """k = 1, unit vectors at angles 0, 120, 240 degrees: s(i > j) = sin(theta_j - theta_i).

    s(0>1) = s(1>2) = s(2>0) = sin 120 = 0.8660254, a cycle A > B > C > A no scalar reward can express.
    The loss's probability at tau = 0.1: sigma(8.660254) = 1 / (1 + 1.7335e-4) = 0.9998267; the reverse
    entries are 1.7333e-4. The GPM code's self-play probability sigma((s_ij - s_ji)/tau) at tau = 1:
    sigma(1.7320508) = 1 / (1 + e^-1.7320508) = 1 / 1.1769212 = 0.8496746 (loss's at tau = 1: sigma(0.8660254)
    = 1 / 1.4206200 = 0.7039180).
    """
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    V = torch.stack([angles.cos(), angles.sin()], dim=1)
    P = gpm_preference_matrix(V, tau=0.1, probability="loss")
    released = gpm_preference_matrix(V, tau=1.0)
    loss_1 = gpm_preference_matrix(V, tau=1.0, probability="loss")
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        assert P[i, j].item() == pytest.approx(0.9998267, abs=1e-7)
        assert P[j, i].item() == pytest.approx(1.7333e-4, abs=1e-7)
        assert released[i, j].item() == pytest.approx(0.8496746, abs=1e-7)
        assert released[j, i].item() == pytest.approx(1 - 0.8496746, abs=1e-7)
        assert loss_1[i, j].item() == pytest.approx(0.7039180, abs=1e-7)
