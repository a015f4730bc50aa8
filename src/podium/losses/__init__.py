"""Preference losses as pure functions behind one registry: objective name -> loss function.

Every loss returns a :class:`LossOutput` (per-example ``losses`` [B] and detached
``chosen_rewards`` / ``rejected_rewards`` [B]); the trainer sums the losses. ``LOSS_SPECS`` says
what each objective needs, so a trainer can build the keyword arguments from a batch and check a
dataset before training::

    spec = LOSS_SPECS[objective]
    check_records(objective, records, source="pairs.jsonl")
    out = LOSSES[objective](**{k: batch[k] for k in spec.inputs}, beta=..., ...)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from podium.errors import ConfigError, DataError
from podium.losses.dpo import dpo_loss, dpop_loss, hinge_loss, ipo_loss, rpo_loss
from podium.losses.gpm import gpm_loss, gpm_preference_matrix, gpm_score
from podium.losses.gpo import gpo_loss
from podium.losses.output import LossOutput
from podium.losses.reward import bradley_terry_loss
from podium.losses.sppo import sppo_hard_loss, sppo_loss, sppo_single_loss

LOSSES: dict[str, Callable[..., LossOutput]] = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "rpo": rpo_loss,
    "dpop": dpop_loss,
    "sppo": sppo_loss,
    "sppo_single": sppo_single_loss,
    "sppo_hard": sppo_hard_loss,
    "gpo": gpo_loss,
    "reward": bradley_terry_loss,
    "gpm": gpm_loss,
}

POLICY_LOGPS = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
)


@dataclass(frozen=True)
class LossSpec:
    """What one objective needs.

    kind: "policy" (sequence log-probs of a policy and a reference model) or "preference_model"
        (reward or GPM head outputs; no reference model).
    inputs: keyword tensors the loss function takes, all with batch dimension B first.
    record_fields: numeric fields every dataset record must carry (beyond prompt/chosen/rejected);
        the collator turns each into a [B] tensor under the same name.
    hyperparameters: keyword settings the function accepts (the config key ``lambda`` is ``lambda_``).
    """

    kind: str
    inputs: tuple[str, ...]
    record_fields: tuple[str, ...] = ()
    hyperparameters: tuple[str, ...] = ("beta",)


LOSS_SPECS: dict[str, LossSpec] = {
    "dpo": LossSpec("policy", POLICY_LOGPS, hyperparameters=("beta", "label_smoothing")),
    "ipo": LossSpec("policy", POLICY_LOGPS + ("chosen_lengths", "rejected_lengths")),
    "hinge": LossSpec("policy", POLICY_LOGPS),
    "rpo": LossSpec(
        "policy", POLICY_LOGPS + ("chosen_lengths",), hyperparameters=("beta", "alpha", "label_smoothing")
    ),
    "dpop": LossSpec("policy", POLICY_LOGPS, hyperparameters=("beta", "lambda_", "label_smoothing")),
    "sppo": LossSpec(
        "policy",
        POLICY_LOGPS + ("chosen_prob", "rejected_prob"),
        record_fields=("chosen_prob", "rejected_prob"),
    ),
    "sppo_single": LossSpec("policy", POLICY_LOGPS + ("pair_prob",), record_fields=("pair_prob",)),
    "sppo_hard": LossSpec("policy", POLICY_LOGPS),
    "gpo": LossSpec(
        "policy",
        POLICY_LOGPS + ("chosen_score", "rejected_score"),
        record_fields=("chosen_score", "rejected_score"),
    ),
    "reward": LossSpec("preference_model", ("chosen_rewards", "rejected_rewards"), hyperparameters=()),
    "gpm": LossSpec(
        "preference_model", ("chosen_embeddings", "rejected_embeddings"), hyperparameters=("tau",)
    ),
}

_PROBABILITY_FIELDS = {"chosen_prob", "rejected_prob", "pair_prob"}


def get_loss(objective: str) -> Callable[..., LossOutput]:
    """The loss function for ``objective``; a ConfigError lists the known names."""
    try:
        return LOSSES[objective]
    except KeyError:
        raise ConfigError(
            f"objective: unknown objective {objective!r}; expected one of {sorted(LOSSES)}"
        ) from None


def check_records(objective: str, records: Iterable[Mapping], source: str = "dataset") -> None:
    """Check that every record carries the numeric fields ``objective`` needs.

    Raises DataError naming ``source``, the record number (1-based, = the JSONL line for one record
    a line) and the field: missing, not a finite number, or (for ``*_prob``) outside [0, 1].
    """
    get_loss(objective)
    fields = LOSS_SPECS[objective].record_fields
    if not fields:
        return
    for number, record in enumerate(records, start=1):
        for field in fields:
            where = f"{source}: record {number}: field {field!r}"
            if field not in record:
                raise DataError(
                    f"{where} is missing; objective {objective!r} needs {', '.join(fields)} in every record"
                )
            value = record[field]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"{where} must be a finite number, got {value!r}")
            if field in _PROBABILITY_FIELDS and not 0.0 <= value <= 1.0:
                raise DataError(f"{where} is a probability and must lie in [0, 1], got {value!r}")


__all__ = [
    "LOSSES",
    "LOSS_SPECS",
    "POLICY_LOGPS",
    "LossOutput",
    "LossSpec",
    "bradley_terry_loss",
    "check_records",
    "dpo_loss",
    "dpop_loss",
    "get_loss",
    "gpm_loss",
    "gpm_preference_matrix",
    "gpm_score",
    "gpo_loss",
    "hinge_loss",
    "ipo_loss",
    "rpo_loss",
    "sppo_hard_loss",
    "sppo_loss",
    "sppo_single_loss",
]
