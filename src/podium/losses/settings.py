"""What a recipe may set for an objective: every setting with its type, range, default and meaning
(`SETTINGS`; the `train` stage validates a recipe against them), and the training settings every objective
starts from unless its `LossSpec.defaults` or the recipe says otherwise (the learning rate)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from podium.losses.divergence import F_DIVERGENCES


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
        if self.type is bool:
            return "true or false"
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
        if self.type is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if value is None and self.default is None:
            return None
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
    Setting("label_smoothing", "label_smoothing", float, 0.0, "ε: probability that a label is flipped (cDPO, robust, "
            "AOT, CPO, SimPO); EXO's target probability of the rejected response", ge=0, lt=0.5),
    Setting("f_divergence_type", "f_divergence_type", str, "reverse_kl", "f-DPO: the divergence whose f'(π/π_ref) "
            "replaces the log-ratio ρ in the loss (reverse_kl: DPO)", choices=F_DIVERGENCES),
    Setting("f_alpha_divergence_coef", "f_alpha_divergence_coef", float, 0.5, "α of the α-divergence "
            "(f_divergence_type: alpha_divergence; 1 is reverse KL)"),
    Setting("ld_alpha", None, float, None, "LD-DPO: weight of the log-probs of the longer response's tokens past "
            "the shorter one's length, policy and reference (unset: plain sums)", ge=0, le=1),
    Setting("use_weighting", None, bool, False, "WPO: weight each pair's loss by the policy's length-normalised "
            "probability of both responses (relative to each token distribution's self-probability)"),
    Setting("discopop_tau", "discopop_tau", float, 0.05, "τ: DiscoPOP's temperature of the logistic/exponential "
            "blend", gt=0),
    Setting("desirable_weight", "desirable_weight", float, 1.0, "λ_D: KTO's weight of desirable examples' losses",
            ge=0),
    Setting("undesirable_weight", "undesirable_weight", float, 1.0, "λ_U: KTO's weight of undesirable examples' "
            "losses", ge=0),
    Setting("cpo_alpha", "cpo_alpha", float, 1.0, "weight of the chosen responses' NLL in CPO and SimPO (TRL's "
            "behaviour-cloning term; 0: none)", ge=0),
    Setting("simpo_gamma", "simpo_gamma", float, 0.5, "γ: SimPO's target reward margin", ge=0),
    Setting("alphapo_alpha", "alphapo_alpha", float, 0.0, "AlphaPO's α (TRL CPO's `alpha`): reward (1 − p^(−α))/α "
            "in place of the log-prob in CPO and SimPO (0: log-prob)"),
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
