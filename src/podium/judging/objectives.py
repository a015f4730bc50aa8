"""Training objectives `reward` (Bradley–Terry) and `gpm` for `podium.training.loop.train_loop`.

objective(model, batch) -> (loss_sum, metrics): loss_sum is the SUM over the batch's pairs of
−log σ(z), z = model.pair_logits(batch) (r_w − r_l for Bradley–Terry, s(w ≻ l)/τ for GPM;
DESIGN.md "Losses"); metrics are per-pair tensors [B]. Batches come from
`podium.judging.pairs.make_pair_collate` (`batch["count"]` = B pairs).

Note: the per-example loss here is the one-liner −log σ(z); `podium.losses.reward` / `gpm` own
these formulas and should replace it when the branches are unified.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_logistic_objective(model, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """−Σ log σ(z) over pairs, z [B] the logit of P(chosen ≻ rejected)."""
    logits = model.pair_logits(batch)
    losses = -F.logsigmoid(logits)
    metrics = {
        "loss": losses.detach(),
        "accuracy": (logits.detach() > 0).float(),
        "margin": logits.detach(),
    }
    return losses.sum(), metrics


def reward_objective(model, batch: dict):
    """Bradley–Terry reward loss −log σ(r_w − r_l) (Ouyang et al. 2022, eq. 1), summed over pairs."""
    return pairwise_logistic_objective(model, batch)


def gpm_objective(model, batch: dict):
    """GPM loss −log σ(s(w ≻ l)/τ) (Zhang et al. 2024, arXiv:2410.02197), summed over pairs."""
    return pairwise_logistic_objective(model, batch)


OBJECTIVES = {"reward": reward_objective, "gpm": gpm_objective}


@torch.no_grad()
def preference_accuracy(model, records, collate, batch_size: int = 16) -> dict:
    """Share of pairs with P(chosen ≻ rejected) > 0.5, i.e. pair logit > 0; ties count as wrong."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(records), batch_size):
        batch = collate(records[start : start + batch_size])
        correct += int((model.pair_logits(batch) > 0).sum())
    model.train(was_training)
    return {"accuracy": correct / len(records) if records else 0.0, "count": len(records)}
