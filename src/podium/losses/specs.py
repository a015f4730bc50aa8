"""The objective table: every objective podium trains, what its loss needs and which settings it takes.

`LOSS_SPECS` is the single source for
- the objective list (the `train` stage's `objective:`, `LOSSES`, the self-play objectives),
- each objective's settings with their types, ranges and meaning (`SETTINGS`; the `train` stage
  validates a recipe against them, so `beta: 0` or `lambda` on a DPO stage is a config error),
- per-objective training defaults (`LossSpec.defaults`, e.g. the learning rate),
- the method label and summary on model cards (`title`, `summary`, `method`),
- the table in docs/OBJECTIVES.md (`objectives_markdown`, checked by a test).

Adding a loss: write the pure function, add its `LossSpec` here; a new setting also gets a
`Setting` and one field line in `podium.training.train.TrainConfig` (a test checks both agree).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from podium.errors import ConfigError, DataError
from podium.losses.dpo import dpo_loss, dpop_loss, hinge_loss, ipo_loss, rpo_loss
from podium.losses.gpm import gpm_loss
from podium.losses.gpo import gpo_loss
from podium.losses.output import LossOutput
from podium.losses.reward import bradley_terry_loss
from podium.losses.sppo import sppo_hard_loss, sppo_loss, sppo_single_loss

POLICY_LOGPS = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
)


@dataclass(frozen=True)
class Setting:
    """One objective setting as a recipe writes it.

    key: the config key path (`beta`, `lambda`, `head.tau`: the GPM head's options sit under `head:`).
    arg: the loss function's keyword for it (`lambda_`), or None when the loss does not take it.
    Bounds gt/ge/lt/le (None: unbounded) and `choices` are what the config validator enforces.
    """

    key: str
    arg: str | None
    type: type
    default: object
    doc: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple | None = None

    @property
    def field(self) -> str:
        """The attribute name on the config (the key's last part; `lambda` is a Python keyword)."""
        name = self.key.rsplit(".", 1)[-1]
        return "lambda_" if name == "lambda" else name

    def allowed(self) -> str:
        """The accepted values in words, e.g. "> 0", "in [0, 0.5)", "one of None, 'softmax'"."""
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        low = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None else None
        high = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return "any " + self.type.__name__

    def problem(self, value) -> str | None:
        """Why `value` is not acceptable, or None when it is."""
        if self.choices is not None:
            return None if value in self.choices else f"must be {self.allowed()}, got {value!r}"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (self.type is int and not float(value).is_integer()):
            return f"must be a{'n integer' if self.type is int else ' number'}, got {value!r}"
        ok = all((
            self.gt is None or value > self.gt, self.ge is None or value >= self.ge,
            self.lt is None or value < self.lt, self.le is None or value <= self.le,
        ))
        return None if ok and math.isfinite(value) else f"must be {self.allowed()}, got {value!r}"


SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("beta", "beta", float, 0.1, "β: scale of the implicit reward β·ρ (SPPO, GPO: η = 1/β)", gt=0),
    Setting("lambda", "lambda_", float, 50.0, "λ: DPOP's penalty on a chosen log-ratio below zero", ge=0),
    Setting("alpha", "alpha", float, 1.0, "α: RPO's weight of the chosen response's NLL", ge=0),
    Setting("label_smoothing", "label_smoothing", float, 0.0, "ε: cDPO's probability that a label is flipped",
            ge=0, lt=0.5),
    Setting("head.k", None, int, 4, "GPM embedding size 2k (k 2-D blocks)", ge=1),
    Setting("head.tau", "tau", float, 0.1, "τ: GPM temperature, P = σ(s/τ)", gt=0),
    Setting("head.pooling", None, str, "mean", "reward/GPM head input: mean state over the response tokens, or "
            "the last token's (the released GPM and TRL convention)", choices=("mean", "last")),
    Setting("head.gates", None, str, None, "GPM prompt-dependent eigenvalue gates λ(x)",
            choices=(None, "softmax", "softplus")),
)}

# What every objective trains with unless the recipe says otherwise (TRL's DPO learning rate).
TRAINING_DEFAULTS = MappingProxyType({"learning_rate": 1e-6})
# Preference models start from TRL's RewardConfig learning rate: at 1e-6 a reward or GPM head on a fine-tuned
# backbone does not move in 5 epochs, at 1e-4 it learns (benchmarks/results/effects_notes.md, section 4).
PREFERENCE_MODEL_DEFAULTS = MappingProxyType({"learning_rate": 1e-4})


@dataclass(frozen=True)
class LossSpec:
    """One objective.

    fn: the pure loss function (`podium.losses`), returning a `LossOutput`.
    kind: "policy" (sequence log-probs of a policy and a reference model) or "preference_model"
        (reward or GPM head outputs; no reference model).
    inputs: keyword tensors `fn` takes, all with batch dimension B first.
    settings: the `SETTINGS` keys a recipe may give this objective.
    record_fields: numeric fields every dataset record must carry (beyond prompt/chosen/rejected);
        the collator turns each into a [B] tensor under the same name.
    self_play: whether the `selfplay` stage can train with it (its targets come from the judge).
    method: the model card's method (one card section and citation per method).
    title, summary: the method's name and one-line description on model cards and in the docs.
    defaults: training settings this objective starts from (learning rate, ...).
    """

    fn: Callable[..., LossOutput]
    kind: str
    inputs: tuple[str, ...]
    settings: tuple[str, ...]
    method: str
    title: str
    summary: str
    record_fields: tuple[str, ...] = ()
    self_play: bool = False
    tags: tuple[str, ...] = ()
    defaults: Mapping[str, object] = field(default_factory=lambda: TRAINING_DEFAULTS)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The keywords of `fn` that come from settings (`lambda_`, `tau`, ...)."""
        return tuple(SETTINGS[k].arg for k in self.settings if SETTINGS[k].arg)


_DPO = "Direct Preference Optimization (DPO)"
_SPPO = "Self-Play Preference Optimization (SPPO)"
_SPPO_SUMMARY = ("Iterative self-play: sample K responses per prompt, estimate each one's win probability against "
                 "the current policy with a preference judge, and regress the log-ratio onto η(p − ½).")

LOSS_SPECS: dict[str, LossSpec] = {
    "dpo": LossSpec(
        dpo_loss, "policy", POLICY_LOGPS, ("beta", "label_smoothing"), "dpo", _DPO,
        "Trains the policy directly on preference pairs with the loss -log σ(β(ρ_w − ρ_l)), where ρ is the "
        "policy-to-reference log-ratio of a response.", tags=("dpo",)),
    "ipo": LossSpec(
        ipo_loss, "policy", POLICY_LOGPS + ("chosen_lengths", "rejected_lengths"), ("beta",), "ipo",
        "Identity Preference Optimization (IPO)",
        "Regresses the length-normalised log-ratio margin onto 1/(2β) instead of maximising it.", tags=("ipo",)),
    "hinge": LossSpec(
        hinge_loss, "policy", POLICY_LOGPS, ("beta",), "hinge", "Hinge-loss preference optimization (SLiC)",
        "A hinge on the log-ratio margin, relu(1 − β(ρ_w − ρ_l)): pairs already separated by 1/β add no loss.",
        tags=("hinge", "slic")),
    "rpo": LossSpec(
        rpo_loss, "policy", POLICY_LOGPS + ("chosen_lengths",), ("beta", "alpha", "label_smoothing"), "rpo",
        "DPO with an NLL term (RPO)",
        "DPO plus α times the chosen response's per-token negative log-likelihood, which keeps the "
        "preferred answers likely.", tags=("rpo", "dpo")),
    "dpop": LossSpec(
        dpop_loss, "policy", POLICY_LOGPS, ("beta", "lambda", "label_smoothing"), "dpop",
        "DPO-Positive (DPOP, Smaug)",
        "DPO plus a penalty λ·max(0, −ρ_w) that keeps the likelihood of preferred responses from falling, "
        "for pairs with small edit distance.", tags=("dpop", "smaug")),
    "sppo": LossSpec(
        sppo_loss, "policy", POLICY_LOGPS + ("chosen_prob", "rejected_prob"), ("beta",), "sppo", _SPPO,
        _SPPO_SUMMARY, record_fields=("chosen_prob", "rejected_prob"), self_play=True,
        tags=("sppo", "self-play")),
    "sppo_single": LossSpec(
        sppo_single_loss, "policy", POLICY_LOGPS + ("pair_prob",), ("beta",), "sppo", _SPPO, _SPPO_SUMMARY,
        record_fields=("pair_prob",), self_play=True, tags=("sppo", "self-play")),
    "sppo_hard": LossSpec(
        sppo_hard_loss, "policy", POLICY_LOGPS, ("beta",), "sppo", _SPPO, _SPPO_SUMMARY, self_play=True,
        tags=("sppo", "self-play")),
    "gpo": LossSpec(
        gpo_loss, "policy", POLICY_LOGPS + ("chosen_score", "rejected_score"), ("beta",), "gpo",
        "General Preference Optimization (GPO) with a General Preference Model (GPM)",
        "Self-play where a GPM embeds each response and scores preferences with a skew-symmetric form, "
        "capturing intransitive preferences in K passes instead of K².",
        record_fields=("chosen_score", "rejected_score"), self_play=True, tags=("gpo", "gpm", "self-play")),
    "reward": LossSpec(
        bradley_terry_loss, "preference_model", ("chosen_rewards", "rejected_rewards"), ("head.pooling",), "reward",
        "Bradley–Terry reward model",
        "A scalar reward head on the backbone, trained on preference pairs with -log σ(r_w − r_l).",
        tags=("reward-model",), defaults=PREFERENCE_MODEL_DEFAULTS),
    "gpm": LossSpec(
        gpm_loss, "preference_model", ("chosen_embeddings", "rejected_embeddings"),
        ("head.k", "head.tau", "head.gates", "head.pooling"), "gpm", "General Preference embedding Model (GPM)",
        "Embeds each response in R^{2k} and scores preferences with a skew-symmetric form, "
        "-log σ(s(y_w ≻ y_l)/τ), so intransitive preferences can be learned.", tags=("gpm", "preference-model"),
        defaults=PREFERENCE_MODEL_DEFAULTS),
}

LOSSES: dict[str, Callable[..., LossOutput]] = {name: spec.fn for name, spec in LOSS_SPECS.items()}
SELF_PLAY_OBJECTIVES = tuple(name for name, spec in LOSS_SPECS.items() if spec.self_play)
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
        for field_name in fields:
            where = f"{source}: record {number}: field {field_name!r}"
            if field_name not in record:
                raise DataError(
                    f"{where} is missing; objective {objective!r} needs {', '.join(fields)} in every record"
                )
            value = record[field_name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"{where} must be a finite number, got {value!r}")
            if field_name in _PROBABILITY_FIELDS and not 0.0 <= value <= 1.0:
                raise DataError(f"{where} is a probability and must lie in [0, 1], got {value!r}")


def objectives_markdown() -> str:
    """The objective and settings tables of docs/OBJECTIVES.md, rendered from `LOSS_SPECS` and `SETTINGS`."""
    lines = ["| objective | method | settings | record fields | self-play | defaults |",
             "|---|---|---|---|---|---|"]
    for name, spec in LOSS_SPECS.items():
        settings = ", ".join(f"`{k}`" for k in spec.settings) or "—"
        fields = ", ".join(f"`{f}`" for f in spec.record_fields) or "—"
        defaults = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in spec.defaults.items())
        lines.append(f"| `{name}` | {spec.title} | {settings} | {fields} | {'yes' if spec.self_play else '—'} "
                     f"| {defaults or '—'} |")
    lines += ["", "| setting | loss keyword | type | default | accepted | meaning |", "|---|---|---|---|---|---|"]
    for s in SETTINGS.values():
        lines.append(f"| `{s.key}` | {f'`{s.arg}`' if s.arg else '—'} | {s.type.__name__} | {s.default!r} "
                     f"| {s.allowed()} | {s.doc} |")
    return "\n".join(lines) + "\n"
