"""Preference losses as pure functions behind one table: objective name -> `LossSpec` (podium.losses.specs).

Every loss returns a :class:`LossOutput` (per-example ``losses`` [B] and detached
``chosen_rewards`` / ``rejected_rewards`` [B]); the trainer sums the losses. ``LOSS_SPECS`` says
what each objective needs and accepts, so a trainer can build the keyword arguments from a batch
and check a dataset before training::

    spec = LOSS_SPECS[objective]
    check_records(objective, records, source="pairs.jsonl")
    out = spec.fn(**{k: batch[k] for k in spec.inputs}, beta=..., ...)
"""

from __future__ import annotations

from podium.losses.dpo import dpo_loss, dpop_loss, hinge_loss, ipo_loss, rpo_loss
from podium.losses.gpm import gpm_loss, gpm_preference_matrix, gpm_score, gpm_score_matrix
from podium.losses.gpo import gpo_loss
from podium.losses.output import LossOutput
from podium.losses.reward import bradley_terry_loss
from podium.losses.specs import (
    LOSS_SPECS,
    LOSSES,
    POLICY_LOGPS,
    SELF_PLAY_OBJECTIVES,
    SETTINGS,
    TRAINING_DEFAULTS,
    LossSpec,
    Setting,
    check_records,
    get_loss,
    objectives_markdown,
)
from podium.losses.sppo import sppo_hard_loss, sppo_loss, sppo_single_loss

__all__ = [
    "LOSSES",
    "LOSS_SPECS",
    "POLICY_LOGPS",
    "SELF_PLAY_OBJECTIVES",
    "SETTINGS",
    "TRAINING_DEFAULTS",
    "LossOutput",
    "LossSpec",
    "Setting",
    "bradley_terry_loss",
    "check_records",
    "dpo_loss",
    "dpop_loss",
    "get_loss",
    "gpm_loss",
    "gpm_preference_matrix",
    "gpm_score",
    "gpm_score_matrix",
    "gpo_loss",
    "hinge_loss",
    "ipo_loss",
    "objectives_markdown",
    "rpo_loss",
    "sppo_hard_loss",
    "sppo_loss",
    "sppo_single_loss",
]
