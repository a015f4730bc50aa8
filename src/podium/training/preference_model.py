"""Training objectives `reward` (Bradley–Terry) and `gpm` for `podium.training.loop.train_loop`.

objective(model, batch) -> (loss_sum, metrics): loss_sum is the SUM over the batch's pairs of the
loss from `podium.losses` (`bradley_terry_loss`, `gpm_loss`); metrics are per-pair tensors [B].
Batches come from `podium.data.response_batches.make_pair_collate`: rows [:B] chosen, [B:]
rejected, `batch["count"]` = B pairs. The models are `podium.models.heads.RewardModel` / `GPMModel`.
"""

from __future__ import annotations

import torch

from podium.losses.gpm import gpm_loss
from podium.losses.reward import bradley_terry_loss


def _metrics(out) -> dict[str, torch.Tensor]:
    margin = out.chosen_rewards - out.rejected_rewards
    return {"loss": out.losses.detach(), "accuracy": (margin > 0).float(), "margin": margin}


def reward_objective(model, batch: dict):
    """Bradley–Terry reward loss −log σ(r_w − r_l) (Ouyang et al. 2022, eq. 1), summed over pairs."""
    r = model(batch["input_ids"], batch["attention_mask"], batch.get("prompt_lengths"))
    n = r.shape[0] // 2
    out = bradley_terry_loss(r[:n], r[n:])
    return out.losses.sum(), _metrics(out)


def gpm_objective(model, batch: dict):
    """GPM loss −log σ(s(w ≻ l)/τ) (Zhang et al. 2024, arXiv:2410.02197), summed over pairs.

    Both rows of a pair share the prompt, so the chosen row's gates λ(x) stand for the pair.
    """
    v, lambdas = model(batch["input_ids"], batch["attention_mask"], batch.get("prompt_lengths"))
    n = v.shape[0] // 2
    out = gpm_loss(v[:n], v[n:], lambdas=None if lambdas is None else lambdas[:n], tau=model.tau)
    return out.losses.sum(), _metrics(out)


# objective name (a `podium.losses.LOSS_SPECS` entry of kind "preference_model") -> objective.
PREFERENCE_MODEL_OBJECTIVES = {"reward": reward_objective, "gpm": gpm_objective}
