"""The preference objective: a batch of pairs -> (sum of per-pair losses, per-pair metrics).

The loss itself comes from the `podium.losses.LOSSES` registry by objective name (dpo, ipo,
hinge, rpo, dpop, sppo, sppo_single, sppo_hard, gpo). This module only computes policy
log-probs, looks up cached reference log-probs and reports the metrics TRL logs. Reduction
(dividing by the step's pair count) happens in the shared loop.

For a mixture-of-experts policy the router load-balancing loss is added as TRL 1.16 adds it:
`router_aux_loss_coef * aux_loss` once per batch (so `B * coef * aux` to the batch's loss sum),
logged as `aux_loss` (`podium.training.router_loss`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from podium.data.preference import FLOAT_FIELDS
from podium.losses import LOSS_SPECS, LOSSES
from podium.training.logps import pack_pairs, pair_logps


def make_collate(pad_token_id: int, reference_logps: torch.Tensor, *, prefix_sharing: bool,
                 padding_free: bool) -> Callable[[list[dict]], dict]:
    """`collate(examples) -> batch` for the loop: packed tokens plus reference log-probs `[B]`."""

    def collate(examples: list[dict]) -> dict:
        batch = pack_pairs(examples, pad_token_id, prefix_sharing=prefix_sharing, padding_free=padding_free)
        idx = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
        batch["index"] = idx
        batch["reference_chosen_logps"] = reference_logps[idx, 0]
        batch["reference_rejected_logps"] = reference_logps[idx, 1]
        for key in FLOAT_FIELDS:
            if all(key in ex for ex in examples):
                batch[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
        batch["count"] = len(examples)
        return batch

    return collate


class PreferenceObjective:
    """`objective(model, batch) -> (loss_sum, metrics)` for one policy loss of `podium.losses`.

    The loss's inputs and hyper-parameters are those its `LOSS_SPECS` entry names; `loss_fn`
    replaces the registry function (tests). `router_aux_loss_coef` > 0 adds the MoE router loss
    (`podium.training.router_loss.router_aux_coef` gives TRL's value for a model).
    """

    def __init__(self, objective: str, loss_fn: Callable | None = None, *, router_aux_loss_coef: float = 0.0,
                 **hyperparameters):
        spec = LOSS_SPECS[objective]
        self.objective = objective
        self.router_aux_loss_coef = float(router_aux_loss_coef)
        self.inputs = spec.inputs
        self.loss_fn = loss_fn or LOSSES[objective]
        self.hyperparameters = {k: v for k, v in hyperparameters.items() if k in spec.hyperparameters}

    def __call__(self, model, batch: dict):
        logps, n_tokens, aux = pair_logps(model, batch, router_loss=self.router_aux_loss_coef != 0)
        B = batch["n_pairs"]
        device = logps.device
        available = {
            "policy_chosen_logps": logps[:B],
            "policy_rejected_logps": logps[B:],
            "reference_chosen_logps": batch["reference_chosen_logps"].to(device, logps.dtype),
            "reference_rejected_logps": batch["reference_rejected_logps"].to(device, logps.dtype),
            "chosen_lengths": n_tokens[:B].to(logps.dtype),
            "rejected_lengths": n_tokens[B:].to(logps.dtype),
        }
        available.update({k: batch[k].to(device, logps.dtype) for k in FLOAT_FIELDS if k in batch})
        out = self.loss_fn(**{k: available[k] for k in self.inputs}, **self.hyperparameters)
        chosen_rewards, rejected_rewards = out.chosen_rewards.detach(), out.rejected_rewards.detach()
        metrics = {
            "logps/chosen": logps[:B].detach(),
            "logps/rejected": logps[B:].detach(),
            "rewards/chosen": chosen_rewards,
            "rewards/rejected": rejected_rewards,
            "rewards/margins": chosen_rewards - rejected_rewards,
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
        }
        loss_sum = out.losses.sum()
        if aux is not None:
            loss_sum = loss_sum + B * self.router_aux_loss_coef * aux.to(loss_sum.dtype)
            metrics["aux_loss"] = aux.detach().expand(B)
        return loss_sum, metrics
