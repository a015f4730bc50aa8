"""General preference embedding model (GPM): skew-symmetric preference scores and their loss.

Each response y to a prompt x is embedded as v in R^{2k}, L2-normalised. The preference score is

    s(y_i > y_j | x) = <R(x) v_i, v_j>,  R(x) = blockdiag(lambda_1(x) J, ..., lambda_k(x) J),
    J = [[0, -1], [1, 0]],

so with v = (a_1, b_1, ..., a_k, b_k): s(i > j) = sum_m lambda_m (a_im b_jm - b_im a_jm).
R is skew-symmetric, hence s(i > j) = -s(j > i) and s(i > i) = 0, which lets the model express
cyclic (intransitive) preferences that no scalar reward can.

Two probabilities are in use, and they differ by a factor 2 in the logit:

- the loss fits P(y_i > y_j | x) = sigma(s(i > j) / tau) (the paper's eq. and the GPM code's
  ``HighDimGeneralPreferenceLoss``; :func:`gpm_loss` here);
- the GPM code's self-play pipeline judges with P_ij = sigma((S_ij - S_ji)), S_ij = s(i > j) / tau
  its score table (``scripts/RMs/reward_model.py`` ``calculate_score``, ``scripts/compute_prob_from_raw.py``),
  which is sigma(2 s(i > j) / tau), and its GPO targets are the row means of S_ij - S_ji
  (``scripts/compute_score_from_raw.py``).

:func:`gpm_logit_matrix` gives either as a matrix of logits L_ij = log(P_ij / P_ji):
``probability="released"`` (the default, what the GPM code's SPPO/GPO runs used) or ``"loss"``.

Reference: Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model for Language
Model Alignment" (preference embedding, skew-symmetric operator, eigenvalue-scale gates lambda(x),
temperature tau = 0.1). The functions here L2-normalise their inputs themselves (idempotent), so
raw head outputs may be passed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses.output import LossOutput


def _pairs(v: Tensor) -> tuple[Tensor, Tensor]:
    """Normalise v [..., 2k] and split it into the 2-D blocks' coordinates a, b, each [..., k]."""
    if v.shape[-1] % 2:
        raise ValueError(f"GPM embeddings need an even size 2k, got {v.shape[-1]}")
    v = F.normalize(v, dim=-1)
    return v[..., 0::2], v[..., 1::2]


def _gates(lambdas: Tensor | None, a: Tensor) -> Tensor:
    if lambdas is None:
        return torch.ones_like(a)
    if lambdas.shape[-1] != a.shape[-1]:
        raise ValueError(f"GPM gates need k = {a.shape[-1]} values, got {lambdas.shape[-1]}")
    return lambdas


def gpm_score(v_i: Tensor, v_j: Tensor, lambdas: Tensor | None = None) -> Tensor:
    """s(y_i > y_j) = <R v_i, v_j> for embeddings v_i, v_j [B, 2k] and gates lambdas [B, k] or [k].

    ``lambdas`` None means lambda_m = 1 (no prompt-dependent gates). Returns [B]. Exactly
    skew-symmetric in floating point: gpm_score(v_j, v_i) == -gpm_score(v_i, v_j).
    """
    a_i, b_i = _pairs(v_i)
    a_j, b_j = _pairs(v_j)
    return (_gates(lambdas, a_i) * (a_i * b_j - a_j * b_i)).sum(dim=-1)


def gpm_score_matrix(embeddings: Tensor, lambdas: Tensor | None = None) -> Tensor:
    """All-pairs scores S_ij = s(y_i > y_j) for the K responses to one prompt.

    ``embeddings`` [K, 2k], ``lambdas`` [k] (the prompt's gates) or None. Returns [K, K], exactly
    skew-symmetric with a zero diagonal (each entry is :func:`gpm_score` of one pair). K embeddings
    cost K model passes, not K^2.
    """
    return gpm_score(embeddings[:, None, :], embeddings[None, :, :], lambdas)


GPM_PROBABILITIES = ("released", "loss")


def gpm_logit_matrix(embeddings: Tensor, lambdas: Tensor | None = None, tau: float = 0.1, *,
                     probability: str = "released") -> Tensor:
    """Preference logits L_ij = log(P_ij / P_ji) for the K responses to one prompt.

    ``probability="released"``: L_ij = (s_ij - s_ji) / tau = 2 s_ij / tau, the GPM code's
    self-play convention (module docstring); ``"loss"``: L_ij = s_ij / tau, the probability
    :func:`gpm_loss` fits. ``embeddings`` [K, 2k], ``lambdas`` [k] or None. Returns [K, K], exactly
    skew-symmetric with a zero diagonal. GPO's target for response k is the row mean of L.
    """
    if probability not in GPM_PROBABILITIES:
        raise ValueError(f"GPM probability must be one of {GPM_PROBABILITIES}, got {probability!r}")
    S = gpm_score_matrix(embeddings, lambdas) / tau
    # S is skew-symmetric, so S - S^T = 2 S; written as the difference to mirror the GPM code.
    return S - S.T if probability == "released" else S


def gpm_preference_matrix(embeddings: Tensor, lambdas: Tensor | None = None, tau: float = 0.1, *,
                          probability: str = "released") -> Tensor:
    """P_ij = sigma(L_ij) with L from :func:`gpm_logit_matrix` (default: the released sigma(2 s_ij / tau)).

    ``embeddings`` [K, 2k], ``lambdas`` [k] or None. Returns [K, K] with P_ij + P_ji = 1 and
    P_ii = 1/2 exactly.
    """
    return torch.sigmoid(gpm_logit_matrix(embeddings, lambdas, tau, probability=probability)).fill_diagonal_(0.5)


def gpm_loss(
    chosen_embeddings: Tensor,
    rejected_embeddings: Tensor,
    *,
    lambdas: Tensor | None = None,
    tau: float = 0.1,
) -> LossOutput:
    """GPM loss: -log sigma(s(y_w > y_l) / tau).

    ``chosen_embeddings`` / ``rejected_embeddings`` [B, 2k]; ``lambdas`` [B, k] (prompt-dependent
    gates) or [k] or None. Output fields [B]. There is no scalar reward per response, so the
    returned "rewards" split the logit antisymmetrically: chosen = s / (2 tau), rejected =
    -s / (2 tau), detached; their margin is the log-odds of P(y_w > y_l), as for Bradley–Terry, and
    "accuracy" (chosen > rejected) is P(y_w > y_l) > 1/2.
    """
    logits = gpm_score(chosen_embeddings, rejected_embeddings, lambdas) / tau
    half = 0.5 * logits.detach()
    return LossOutput(-F.logsigmoid(logits), half, -half)
