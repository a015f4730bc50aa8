"""The preference objective: a batch of pairs -> (sum of per-pair losses, per-pair metrics).

The loss itself comes from the `podium.losses.LOSSES` registry by objective name (dpo, ipo,
hinge, rpo, dpop, sppo, sppo_single, sppo_hard, gpo). This module only computes policy
log-probs, looks up cached reference log-probs and reports the metrics TRL logs. Reduction
(dividing by the step's pair count) happens in the shared loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from podium.training.logps import pack_pairs, sequence_logps

# Per-example float fields a loss may read from the batch (SPPO / GPO targets).
TARGET_FIELDS = ("chosen_prob", "rejected_prob", "chosen_score", "rejected_score", "score")


def make_collate(pad_token_id: int, reference_logps: torch.Tensor, *, prefix_sharing: bool,
                 padding_free: bool) -> Callable[[list[dict]], dict]:
    """`collate(examples) -> batch` for the loop: packed tokens plus reference log-probs `[B]`."""

    def collate(examples: list[dict]) -> dict:
        batch = pack_pairs(examples, pad_token_id, prefix_sharing=prefix_sharing, padding_free=padding_free)
        idx = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
        batch["index"] = idx
        batch["reference_chosen_logps"] = reference_logps[idx, 0]
        batch["reference_rejected_logps"] = reference_logps[idx, 1]
        for key in TARGET_FIELDS:
            if all(key in ex for ex in examples):
                batch[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
        batch["count"] = len(examples)
        return batch

    return collate


def call_loss(fn: Callable, **available):
    """Call a registry loss with the keyword arguments it declares; returns (losses, chosen_r, rejected_r)."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in available.items() if takes_any or k in params}
    out = fn(**kwargs)
    if isinstance(out, dict):
        return out["losses"], out["chosen_rewards"], out["rejected_rewards"]
    if hasattr(out, "losses"):
        return out.losses, out.chosen_rewards, out.rejected_rewards
    return out[0], out[1], out[2]


class PreferenceObjective:
    """`objective(model, batch) -> (loss_sum, metrics)` for one loss of the registry."""

    def __init__(self, loss_fn: Callable, **loss_params):
        self.loss_fn = loss_fn
        self.loss_params = loss_params

    def __call__(self, model, batch: dict):
        logps, n_tokens = sequence_logps(model, batch)
        B = batch["n_pairs"]
        policy_chosen_logps, policy_rejected_logps = logps[:B], logps[B:]
        device = logps.device
        reference_chosen_logps = batch["reference_chosen_logps"].to(device, logps.dtype)
        reference_rejected_logps = batch["reference_rejected_logps"].to(device, logps.dtype)
        extra = {k: batch[k].to(device) for k in TARGET_FIELDS if k in batch}
        losses, chosen_rewards, rejected_rewards = call_loss(
            self.loss_fn,
            policy_chosen_logps=policy_chosen_logps,
            policy_rejected_logps=policy_rejected_logps,
            reference_chosen_logps=reference_chosen_logps,
            reference_rejected_logps=reference_rejected_logps,
            chosen_tokens=n_tokens[:B].to(logps.dtype),
            rejected_tokens=n_tokens[B:].to(logps.dtype),
            **extra,
            **self.loss_params,
        )
        chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
        metrics = {
            "logps/chosen": policy_chosen_logps.detach(),
            "logps/rejected": policy_rejected_logps.detach(),
            "rewards/chosen": chosen_rewards,
            "rewards/rejected": rejected_rewards,
            "rewards/margins": chosen_rewards - rejected_rewards,
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
            "tokens": torch.full((B,), batch["num_tokens"] / B, device=device),
        }
        return losses.sum(), metrics
