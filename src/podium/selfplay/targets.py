"""SPPO and GPO targets from a judge's K x K preference matrix (Wu et al., 2024; Zhang et al., 2024)."""

from __future__ import annotations

import torch

from podium.errors import ConfigError
from podium.judging.base import win_probabilities


def sppo_pair(P: torch.Tensor, logits: torch.Tensor | None = None, *, gpo: bool = False) -> dict | None:
    """Chosen = the best response, rejected = the worst, with the targets every SPPO variant needs.

    ``P`` [K, K] preference matrix; win probabilities p_k = mean_j P_kj (self = 1/2). ``logits``
    [K, K] (a judge's preference logits L_ij = log(P_ij / P_ji), GPM judges give them), when given,
    rank the responses by their row means s_hat_k = mean_j L_kj, as the reference code ranks by
    llm-blender's aggregated scores (SPPO ``scripts/compute_prob.py``) or by the GPM score table's
    aggregate (GPM ``scripts/compute_prob_from_raw.py``): ``argmax``/``argmin`` of ``rm_scores``.
    Without them, by p. (The two orders agree whenever P_ij = sigma(s_i - s_j); they can differ for
    intransitive judges.) ``gpo`` adds GPO's targets ``chosen_score`` / ``rejected_score`` = s_hat
    of the pair (the GPM code's scale: podium.losses.gpo).

    Returns None when all K responses are equally preferred (no signal to learn from).
    """
    p = win_probabilities(P)
    rank = p if logits is None else logits.float().mean(dim=1)
    w, l = int(rank.argmax()), int(rank.argmin())
    if torch.isclose(rank[w], rank[l]):
        return None
    out = {"chosen_index": w, "rejected_index": l, "chosen_prob": float(p[w]), "rejected_prob": float(p[l]),
           "pair_prob": float(P[w, l])}
    if gpo:
        if logits is None:
            raise ConfigError("objective gpo needs a judge that gives preference logits: use judge kind 'gpm'")
        out.update(chosen_score=float(rank[w]), rejected_score=float(rank[l]))
    return out
