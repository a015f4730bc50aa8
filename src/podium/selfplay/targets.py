"""SPPO and GPO targets from a judge's K x K preference matrix (Wu et al., 2024; Zhang et al., 2024)."""

from __future__ import annotations

import torch

from podium.judging.base import win_probabilities


def sppo_pair(P: torch.Tensor, scores: torch.Tensor | None = None) -> dict | None:
    """Chosen = argmax win prob, rejected = argmin, with the targets every SPPO variant needs.

    Returns None when all K responses are equally preferred (no signal to learn from).
    `scores` [K, K] (GPM scores s_ij), when given, add GPO's s_hat = mean_j s_kj.
    """
    p = win_probabilities(P)
    w, l = int(p.argmax()), int(p.argmin())
    if torch.isclose(p[w], p[l]):
        return None
    out = {"chosen_index": w, "rejected_index": l, "chosen_prob": float(p[w]), "rejected_prob": float(p[l]),
           "pair_prob": float(P[w, l])}
    if scores is not None:
        s_hat = scores.float().mean(dim=1)
        out.update(chosen_score=float(s_hat[w]), rejected_score=float(s_hat[l]))
    return out
