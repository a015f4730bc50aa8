"""Shared test helpers for the preference trainer: tiny models, pair files and stand-in losses.

`losses()` returns `podium.losses.LOSSES` once that registry exists; until then it returns the
minimal private DPO-family losses below (same signature), so the trainer can be tested alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from podium.models.io import save_model
from podium.models.tiny import build_tiny_model

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


def _rewards(beta, pc, pr, rc, rr):
    return beta * (pc - rc).detach(), beta * (pr - rr).detach()


def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        beta=0.1, label_smoothing=0.0):
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    z = beta * (rho_w - rho_l)
    losses = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return losses, *_rewards(beta, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps)


def dpop(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
         beta=0.1, lambda_=50.0):
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = -F.logsigmoid(beta * (rho_w - rho_l - lambda_ * torch.clamp(-rho_w, min=0)))
    return losses, *_rewards(beta, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps)


def ipo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        chosen_tokens, rejected_tokens, beta=0.1):
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = (rho_w / chosen_tokens - rho_l / rejected_tokens - 1 / (2 * beta)) ** 2
    return losses, *_rewards(beta, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps)


def hinge(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta=0.1):
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = torch.relu(1 - beta * (rho_w - rho_l))
    return losses, *_rewards(beta, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps)


def sppo_hard(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
              beta=0.1):
    rho_w = policy_chosen_logps - reference_chosen_logps
    rho_l = policy_rejected_logps - reference_rejected_logps
    losses = (rho_w - 0.5 / beta) ** 2 + (rho_l + 0.5 / beta) ** 2
    return losses, *_rewards(beta, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps)


FALLBACK_LOSSES = {"dpo": dpo, "dpop": dpop, "ipo": ipo, "hinge": hinge, "sppo_hard": sppo_hard}


def losses() -> dict:
    try:
        from podium.losses import LOSSES
    except ImportError:
        return FALLBACK_LOSSES
    return {**FALLBACK_LOSSES, **LOSSES}


def install_fallback_losses(monkeypatch) -> None:
    """Make `podium.losses.LOSSES` resolvable for stage tests until the losses package lands."""
    import podium.losses as pl

    if not hasattr(pl, "LOSSES"):
        monkeypatch.setattr(pl, "LOSSES", FALLBACK_LOSSES, raising=False)


PAIRS = [
    {"prompt": "What is 2+3?", "chosen": "5", "rejected": "six"},
    {"prompt": "Name a colour:", "chosen": "red", "rejected": "the blue sky"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"},
    {"prompt": "7*6=", "chosen": "42", "rejected": "48"},
    {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello!"}],
     "rejected": [{"role": "assistant", "content": "go away"}]},
]


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def save_tiny(path: Path, seed: int = 0, **kw) -> Path:
    model, tok = build_tiny_model(seed=seed, **{**TINY, **kw})
    save_model(model, tok, path)
    return path
