"""f-DPO: the reward of a response under an f-divergence regulariser in place of DPO's reverse KL.

DPO's implicit reward is beta * rho with rho = log pi_theta(y|x) - log pi_ref(y|x), which comes from the
reverse-KL constraint. Under a general f-divergence the reward becomes beta * f'(u), u = pi_theta / pi_ref
= exp(rho); the normaliser beta * log Z(x) still cancels in the chosen-minus-rejected difference, so the
losses built on that difference (sigmoid/DPO, sigmoid_norm, hinge, IPO, EXO, robust, DiscoPOP) take the
score f'(u) where they took rho, and no other loss can.

Reference: Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with
Diverse Divergence Constraints" (arXiv:2309.16240), Table 1; the four forms and the clamp are TRL 1.16's
(`DPOTrainer._compute_loss`, `f_divergence_type`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# exp() of a larger argument overflows after the cast back to the working dtype (TRL's bounds).
_EXP_CLAMP = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 80.0}


def f_divergence_score(
    rho: Tensor, f_divergence_type: str = "reverse_kl", f_alpha_divergence_coef: float = 0.5
) -> Tensor:
    """f'(u) at u = exp(rho), elementwise on log-ratios rho [B] (same shape out).

    reverse_kl: rho (DPO). forward_kl: 1 - exp(-rho). js_divergence: log 2 + log sigma(rho).
    alpha_divergence (coefficient a): (exp((a - 1) rho) - 1) / (a - 1), the argument clamped at 80 (11 in
    fp16) so exp stays finite; a = 1 is its limit, reverse KL.
    """
    if f_divergence_type == "reverse_kl":
        return rho
    if f_divergence_type == "forward_kl":
        return 1 - torch.exp(-rho)
    if f_divergence_type == "js_divergence":
        return math.log(2) + F.logsigmoid(rho)
    if f_divergence_type == "alpha_divergence":
        a = f_alpha_divergence_coef
        if abs(a - 1.0) < 1e-6:
            return rho
        t = torch.clamp(((a - 1.0) * rho).float(), max=_EXP_CLAMP.get(rho.dtype, 80.0))
        return (torch.exp(t) - 1.0).to(rho.dtype) * (1.0 / (a - 1.0))
    raise ValueError(f"f_divergence_type must be one of {', '.join(F_DIVERGENCES)}, got {f_divergence_type!r}")


def f_scores(rho_w: Tensor, rho_l: Tensor, f_divergence_type: str = "reverse_kl",
             f_alpha_divergence_coef: float = 0.5) -> tuple[Tensor, Tensor]:
    """The chosen and rejected scores f'(exp(rho)) [B] of a pair (`f_divergence_score` on each)."""
    return (f_divergence_score(rho_w, f_divergence_type, f_alpha_divergence_coef),
            f_divergence_score(rho_l, f_divergence_type, f_alpha_divergence_coef))
