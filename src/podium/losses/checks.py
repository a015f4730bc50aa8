"""Checks of a recipe's objective and its data against the objective table: a name or a weighted combination
(`combination_problem`, `combined_settings`), and the numeric fields every record must carry (`check_records`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from podium.errors import DataError
from podium.losses.specs import LOSS_SPECS, get_loss

_PROBABILITY_FIELDS = {"chosen_prob", "rejected_prob", "pair_prob"}


def objective_names(objective: str | Iterable[str]) -> tuple[str, ...]:
    """An objective or a combination (`[sigmoid, bco_pair, sft]`) as a tuple of names."""
    return (objective,) if isinstance(objective, str) else tuple(objective)


def combination_problem(names: tuple[str, ...], loss_weights) -> tuple[str, str] | None:
    """`(config key, why)` when `names` with `loss_weights` cannot be trained as one weighted sum, else None.

    Every component must be a known objective on pairs of sequence log-probs (no preference model, no
    unpaired KTO: TRL's `loss_type` lists combine DPOTrainer losses only); weights, when given, one per
    component and finite.
    """
    if not names:
        return "objective", "needs at least one objective"
    unknown = [n for n in names if n not in LOSS_SPECS]
    if unknown:
        return "objective", f"unknown objective {unknown[0]!r}; known: {', '.join(LOSS_SPECS)}"
    if len(set(names)) != len(names):
        return "objective", f"names an objective twice: {list(names)}"
    if len(names) > 1:
        bad = [n for n in names if LOSS_SPECS[n].kind != "policy" or LOSS_SPECS[n].unpaired]
        if bad:
            return "objective", (f"{bad[0]!r} cannot be combined: combinations are weighted sums of objectives on "
                                 "preference pairs")
    if loss_weights is not None:
        if len(loss_weights) != len(names):
            return "loss_weights", f"loss_weights has {len(loss_weights)} weights for {len(names)} objectives"
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in loss_weights):
            return "loss_weights", f"loss_weights must be finite numbers, got {list(loss_weights)}"
    return None


def combined_settings(names: tuple[str, ...]) -> tuple[str, ...]:
    """The settings a combination accepts: those of any component (each applies to the components that list it)."""
    return tuple(dict.fromkeys(k for n in names for k in LOSS_SPECS[n].settings))


def check_records(objective: str | Iterable[str], records: Iterable[Mapping], source: str = "dataset") -> None:
    """Check that every record carries the numeric fields ``objective`` (or each of a combination) needs.

    Raises DataError naming ``source``, the record number (1-based, = the JSONL line for one record
    a line) and the field: missing, not a finite number, or (for ``*_prob``) outside [0, 1].
    """
    names = objective_names(objective)
    for name in names:
        get_loss(name)
    fields = tuple(dict.fromkeys(f for name in names for f in LOSS_SPECS[name].record_fields))
    if not fields:
        return
    label = names[0] if len(names) == 1 else list(names)
    for number, record in enumerate(records, start=1):
        for field_name in fields:
            where = f"{source}: record {number}: field {field_name!r}"
            if field_name not in record:
                raise DataError(
                    f"{where} is missing; objective {label!r} needs {', '.join(fields)} in every record"
                )
            value = record[field_name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"{where} must be a finite number, got {value!r}")
            if field_name in _PROBABILITY_FIELDS and not 0.0 <= value <= 1.0:
                raise DataError(f"{where} is a probability and must lie in [0, 1], got {value!r}")
