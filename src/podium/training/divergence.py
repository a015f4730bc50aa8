"""Divergence detection: a run that blows up fails its stage instead of finishing "done".

Probe that motivated it (issue 13): AdamW at lr 1e6 drives the weights to 5.8e6 in one step, the
loss then sits at ln(vocab) with a gradient norm of exactly 0, and the stage used to end "done"
and be cached. The loop asks this guard after every optimizer step; a run is diverged when

- the loss, the gradient norm or the trainable weights are not finite;
- the loss exceeds `LOSS_RATIO` x max(|loss of the first step|, 1). The ratio is large on
  purpose: some losses grow legitimately with their hyperparameters after step 1 (DPOP's penalty
  is beta x lambda per nat the chosen log-ratio falls, SPPO's squared error scales with eta^2), while
  10^4 x is an SFT loss of 10^4 nats per token or a DPO margin of -10^4/beta nats: a blow-up;
- the L2 norm of the trainable weights exceeds `WEIGHT_RATIO` x max(its value before the first
  step, 1): fine-tuning moves weights by a few percent, even from random initialisation training
  stays well below 10x (the quickstart's from-scratch SFT grows it by about 1.4x);
- the gradient norm is exactly 0 while the loss is positive for `DEAD_STEPS` steps in a row:
  the network is saturated and nothing is learned any more.

The reference values (first loss, initial weight norm) and the zero-gradient streak live in the
checkpoint, so a resumed run decides exactly as the uninterrupted one would. `detect_divergence:
false` in a training stage turns the ratio and zero-gradient checks off (non-finite values still fail).
The weight norm is checked where every process holds the whole model (one process, DDP); under
FSDP / ZeRO-3 it would need a collective over shards and is skipped (loss and gradient checks stay).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

LOSS_RATIO = 1e4
WEIGHT_RATIO = 100.0
DEAD_STEPS = 3


@torch.no_grad()
def weight_norm(params) -> float:
    """L2 norm of all `params` together (inf or nan when any entry is)."""
    # dtype= accumulates in float32 without a float32 copy of each (bf16) parameter.
    norms = [torch.linalg.vector_norm(p.detach(), dtype=torch.float32) for p in params]
    if not norms:
        return 0.0
    return float(torch.stack(norms).norm())


@dataclass
class DivergenceGuard:
    """State of the checks across steps; `check_*` return a reason string when the run diverged."""

    enabled: bool = True
    first_loss: float | None = None
    initial_weight_norm: float | None = None
    zero_grad_steps: int = 0

    def start(self, norm: float) -> None:
        if self.initial_weight_norm is None:
            self.initial_weight_norm = norm

    def check_loss(self, loss: float) -> str | None:
        """Before the optimizer step: the step is not applied when this fails."""
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        if self.first_loss is None:
            self.first_loss = loss
        limit = LOSS_RATIO * max(abs(self.first_loss), 1.0)
        if self.enabled and abs(loss) > limit:
            return f"loss {loss:.4g} exceeds {LOSS_RATIO:g} x the first step's ({self.first_loss:.4g})"
        return None

    def check_grad(self, grad_norm: float, loss: float) -> str | None:
        """Before the optimizer step."""
        if not math.isfinite(grad_norm):
            return f"non-finite gradient norm ({grad_norm})"
        self.zero_grad_steps = self.zero_grad_steps + 1 if grad_norm == 0.0 and loss > 0.0 else 0
        if self.enabled and self.zero_grad_steps >= DEAD_STEPS:
            return (f"gradient norm exactly 0 with loss {loss:.4g} for {self.zero_grad_steps} steps in a row "
                    "(saturated network: nothing is learned)")
        return None

    def check_weights(self, norm: float) -> str | None:
        """After the optimizer step: the weights in memory are then poisoned and are not saved."""
        if not math.isfinite(norm):
            return f"non-finite weight norm ({norm})"
        if self.enabled and self.initial_weight_norm is not None:
            limit = WEIGHT_RATIO * max(self.initial_weight_norm, 1.0)
            if norm > limit:
                return (f"weight norm {norm:.4g} exceeds {WEIGHT_RATIO:g} x its initial value "
                        f"({self.initial_weight_norm:.4g})")
        return None

    def weights_ok(self, norm: float | None) -> bool:
        """Whether a weight norm recorded in a checkpoint passes `check_weights`."""
        return norm is not None and self.check_weights(norm) is None

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "enabled"}

    def load_state_dict(self, state: dict) -> None:
        self.first_loss = state.get("first_loss")
        self.initial_weight_norm = state.get("initial_weight_norm")
        self.zero_grad_steps = int(state.get("zero_grad_steps", 0))
