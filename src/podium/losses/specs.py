"""The objective table: every objective podium trains, what its loss needs and which settings it takes.

`LOSS_SPECS` is the single source for
- the objective list (the `train` stage's `objective:`, `LOSSES`, the self-play objectives),
- which settings each objective takes (their types, ranges and meaning: `SETTINGS` in
  `podium.losses.settings`; the `train` stage validates a recipe against them, so `beta: 0` or `lambda` on a
  DPO stage is a config error),
- per-objective training defaults (`LossSpec.defaults`; the shared ones: `settings.TRAINING_DEFAULTS`),
- the method label and summary on model cards (`title`, `summary`, `method`: kept in each objective's entry,
  so adding an objective touches one table; the cards' citations and layout are `podium.cards.methods`),
- the table in docs/OBJECTIVES.md (`objectives_doc.objectives_markdown`, checked by a test).
Checks of a recipe's objective and its records against it: `podium.losses.checks`.

Adding a loss: write the pure function, add its `LossSpec` here; a new setting also gets a
`Setting` (`podium.losses.settings`) and one field line in `podium.training.train.TrainConfig` (a test checks
both agree).

What an objective needs is read off its inputs: `reference_*` log-probs (a reference pass, cached), or
none (`reference_free`: no reference model is loaded and no pass runs); `label` (unpaired data, KTO);
`prompt_logps` (the prompt's own log-probs, ORPO's NLL). `ld_alpha` and `use_weighting` are applied by
the trainer around the loss (LD-DPO log-probs, WPO weights) to the objectives that list them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from podium.errors import ConfigError
from podium.losses.aot import aot_loss, aot_unpaired_loss
from podium.losses.apo import apo_down_loss, apo_zero_loss
from podium.losses.bco import bco_pair_loss
from podium.losses.cpo import cpo_hinge_loss, cpo_ipo_loss, cpo_loss, simpo_loss
from podium.losses.discopop import discopop_loss
from podium.losses.dpo import dpo_loss, dpop_loss, hinge_loss, ipo_loss, rpo_loss, sigmoid_norm_loss
from podium.losses.exo import exo_pair_loss
from podium.losses.gpm import gpm_loss
from podium.losses.gpo import gpo_loss
from podium.losses.kto import apo_zero_unpaired_loss, kto_loss
from podium.losses.nca import nca_pair_loss
from podium.losses.orpo import orpo_loss
from podium.losses.output import LossOutput
from podium.losses.reward import bradley_terry_loss
from podium.losses.robust import robust_loss
from podium.losses.settings import PREFERENCE_MODEL_DEFAULTS, SETTINGS, TRAINING_DEFAULTS, Setting
from podium.losses.sft import sft_loss
from podium.losses.sppo import sppo_hard_loss, sppo_loss, sppo_single_loss

POLICY_LOGPS = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
)


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
    defaults: training settings this objective starts from (learning rate, ...; a setting's default here
        replaces the table's, e.g. EXO's label_smoothing).
    formula, paper, trl: for docs/OBJECTIVES.md: the loss in one line, where it comes from, and TRL's name
        for it (the parity tests compare the two).
    bounds: narrower bounds of a setting for this objective (`Setting` field names -> values).
    average_logps: the loss compares average per-token log-probs (SimPO, ORPO), which the trainer then logs
        as `logps/*`, as TRL does.
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
    formula: str = ""
    paper: str = ""
    trl: str = ""
    bounds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    average_logps: bool = False

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The keywords of `fn` that come from settings (`lambda_`, `tau`, ...)."""
        return tuple(SETTINGS[k].arg for k in self.settings if SETTINGS[k].arg)

    @property
    def reference_free(self) -> bool:
        """A policy objective that reads no reference log-probs: no reference model, no reference pass."""
        return self.kind == "policy" and not any(i.startswith("reference_") for i in self.inputs)

    @property
    def unpaired(self) -> bool:
        """Trains on unpaired `{prompt, completion, label}` examples (KTO) instead of pairs."""
        return "label" in self.inputs

    def setting(self, key: str) -> Setting:
        """`SETTINGS[key]` with this objective's narrower bounds and default, if it has them."""
        base = SETTINGS[key]
        narrowed = dict(self.bounds.get(key, {}))
        if key in self.defaults:
            narrowed["default"] = self.defaults[key]
        return replace(base, **narrowed) if narrowed else base


_DPO = "Direct Preference Optimization (DPO)"
_SPPO = "Self-Play Preference Optimization (SPPO)"
_SPPO_SUMMARY = ("Iterative self-play: sample K responses per prompt, estimate each one's win probability against "
                 "the current policy with a preference judge, and regress the log-ratio onto η(p − ½).")
_LENGTHS = ("chosen_lengths", "rejected_lengths")
_F = ("f_divergence_type", "f_alpha_divergence_coef")  # f-DPO: losses built on the difference of scores
_LD, _WPO = ("ld_alpha",), ("use_weighting",)  # applied around the loss (LD-DPO log-probs, WPO weights)
_UNPAIRED = ("policy_logps", "reference_logps")
_UNPAIRED_SETTINGS = ("beta", "desirable_weight", "undesirable_weight")
_CPO_INPUTS = ("policy_chosen_logps", "policy_rejected_logps") + _LENGTHS
_DPO_PAPER = "Rafailov et al. 2023, arXiv:2305.18290"
_CPO_PAPER = "Xu et al. 2024, arXiv:2401.08417"
_CPO_TITLE = "Contrastive Preference Optimization (CPO)"
_CPO_SUMMARY = ("Reference-free: DPO's loss on the policy's own log-probs (a uniform reference), plus cpo_alpha "
                "times the chosen responses' NLL; no reference model is loaded.")
_KTO_DATA = ("Unpaired data: `{prompt, completion, label}` records (TRL's unpaired format; pairs are unpaired as "
             "TRL does)")

# Over 300 lines because of this table (~190 lines), held whole on purpose: every objective's loss, settings,
# defaults, card label and paper in one place, as docs/OBJECTIVES.md renders it.
LOSS_SPECS: dict[str, LossSpec] = {
    "dpo": LossSpec(
        dpo_loss, "policy", POLICY_LOGPS, ("beta", "label_smoothing") + _F + _LD + _WPO, "dpo", _DPO,
        "Trains the policy directly on preference pairs with the loss -log σ(β(ρ_w − ρ_l)), where ρ is the "
        "policy-to-reference log-ratio of a response.", tags=("dpo",),
        formula="−(1−ε) log σ(βΔ) − ε log σ(−βΔ), Δ = ρ_w − ρ_l", paper=_DPO_PAPER + "; cDPO: Mitchell 2023",
        trl="`sigmoid` (ε = 0)"),
    "sigmoid": LossSpec(
        dpo_loss, "policy", POLICY_LOGPS, ("beta",) + _F + _LD + _WPO, "dpo", _DPO,
        "TRL's name for DPO: -log σ(β(ρ_w − ρ_l)).", tags=("dpo",),
        formula="−log σ(βΔ)", paper=_DPO_PAPER, trl="`sigmoid`"),
    "sigmoid_norm": LossSpec(
        sigmoid_norm_loss, "policy", POLICY_LOGPS + _LENGTHS, ("beta",) + _F + _LD + _WPO, "dpo",
        "Length-normalised DPO",
        "DPO on per-token log-ratios, ρ/|y|, which removes DPO's pull toward longer chosen responses.",
        tags=("dpo",), formula="−log σ(β(ρ_w/|y_w| − ρ_l/|y_l|))", paper="TRL 1.16; cf. Meng et al. 2024 "
        "(SimPO's LN-DPO)", trl="`sigmoid_norm`"),
    "ipo": LossSpec(
        ipo_loss, "policy", POLICY_LOGPS + _LENGTHS, ("beta",) + _F + _LD + _WPO, "ipo",
        "Identity Preference Optimization (IPO)",
        "Regresses the length-normalised log-ratio margin onto 1/(2β) instead of maximising it.", tags=("ipo",),
        formula="(ρ_w/|y_w| − ρ_l/|y_l| − 1/(2β))²", paper="Azar et al. 2023, arXiv:2310.12036", trl="`ipo`"),
    "hinge": LossSpec(
        hinge_loss, "policy", POLICY_LOGPS, ("beta",) + _F + _LD + _WPO, "hinge",
        "Hinge-loss preference optimization (SLiC)",
        "A hinge on the log-ratio margin, relu(1 − β(ρ_w − ρ_l)): pairs already separated by 1/β add no loss.",
        tags=("hinge", "slic"), formula="relu(1 − βΔ)", paper="Zhao et al. 2023, arXiv:2305.10425", trl="`hinge`"),
    "exo_pair": LossSpec(
        exo_pair_loss, "policy", POLICY_LOGPS, ("beta", "label_smoothing") + _F + _LD + _WPO, "exo",
        "Efficient Exact Optimization (EXO)",
        "Minimises the reverse KL from the policy's distribution over the pair, softmax(βρ), to the label-smoothed "
        "preference (1 − ε, ε): the mode-seeking counterpart of DPO.", tags=("exo",),
        formula="q_w log(q_w/(1−ε)) + q_l log(q_l/ε), q_w = σ(βΔ) = 1 − q_l", paper="Ji et al. 2024, arXiv:2402.00856",
        trl="`exo_pair` (TRL needs ε > 0; podium starts from the paper's 1e-3)",
        defaults={**TRAINING_DEFAULTS, "label_smoothing": 1e-3}, bounds={"label_smoothing": {"gt": 0.0, "ge": None}}),
    "nca_pair": LossSpec(
        nca_pair_loss, "policy", POLICY_LOGPS, ("beta",) + _LD + _WPO, "nca",
        "Noise Contrastive Alignment (NCA)",
        "Scores each response's reward on its own rather than only the margin, so the chosen log-ratio is pushed "
        "above zero.", tags=("nca",),
        formula="−log σ(βρ_w) − ½ log σ(−βρ_w) − ½ log σ(−βρ_l)", paper="Chen et al. 2024, arXiv:2402.05369",
        trl="`nca_pair`"),
    "robust": LossSpec(
        robust_loss, "policy", POLICY_LOGPS, ("beta", "label_smoothing") + _F + _LD + _WPO, "robust",
        "Robust DPO (rDPO)",
        "An unbiased DPO loss under labels flipped with probability ε: its expectation over the noise is the "
        "clean DPO loss.", tags=("rdpo", "dpo"),
        formula="(−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε)", paper="Chowdhury et al. 2024, arXiv:2403.00409",
        trl="`robust`"),
    "bco_pair": LossSpec(
        bco_pair_loss, "policy", POLICY_LOGPS, ("beta",) + _LD + _WPO, "bco",
        "Binary Classifier Optimization (BCO, paired)",
        "Each response's implicit reward is the logit of a binary classifier: chosen responses are positives, "
        "rejected ones negatives.", tags=("bco",),
        formula="−log σ(βρ_w) − log σ(−βρ_l)", paper="Jung et al. 2024, arXiv:2404.04656 (reward shift δ = 0, as "
        "TRL 1.16)", trl="`bco_pair`"),
    "rpo": LossSpec(
        rpo_loss, "policy", POLICY_LOGPS + ("chosen_lengths",), ("beta", "alpha", "label_smoothing"), "rpo",
        "DPO with an NLL term (RPO)",
        "DPO plus α times the chosen response's per-token negative log-likelihood, which keeps the "
        "preferred answers likely.", tags=("rpo", "dpo"),
        formula="DPO + α · (−log π(y_w|x) / |y_w|), per pair", paper="Pang et al. 2024, arXiv:2404.19733",
        trl="≈ `[sigmoid, sft]` (TRL's NLL is a token mean over the batch)"),
    "dpop": LossSpec(
        dpop_loss, "policy", POLICY_LOGPS, ("beta", "lambda", "label_smoothing"), "dpop",
        "DPO-Positive (DPOP, Smaug)",
        "DPO plus a penalty λ·max(0, −ρ_w) that keeps the likelihood of preferred responses from falling, "
        "for pairs with small edit distance.", tags=("dpop", "smaug"),
        formula="−log σ(β(Δ − λ·max(0, −ρ_w)))", paper="Pal et al. 2024, arXiv:2402.13228", trl="—"),
    "sppo": LossSpec(
        sppo_loss, "policy", POLICY_LOGPS + ("chosen_prob", "rejected_prob"), ("beta",), "sppo", _SPPO,
        _SPPO_SUMMARY, record_fields=("chosen_prob", "rejected_prob"), self_play=True,
        tags=("sppo", "self-play"), formula="(ρ_w − η(p_w − ½))² + (ρ_l − η(p_l − ½))², η = 1/β",
        paper="Wu et al. 2024, arXiv:2405.00675", trl="—"),
    "sppo_single": LossSpec(
        sppo_single_loss, "policy", POLICY_LOGPS + ("pair_prob",), ("beta",), "sppo", _SPPO, _SPPO_SUMMARY,
        record_fields=("pair_prob",), self_play=True, tags=("sppo", "self-play"),
        formula="sppo with p_w = p, p_l = 1 − p", paper="Wu et al. 2024, arXiv:2405.00675", trl="—"),
    "sppo_hard": LossSpec(
        sppo_hard_loss, "policy", POLICY_LOGPS, ("beta",) + _LD + _WPO, "sppo", _SPPO, _SPPO_SUMMARY, self_play=True,
        tags=("sppo", "self-play"), formula="(ρ_w − 1/(2β))² + (ρ_l + 1/(2β))²",
        paper="Wu et al. 2024, arXiv:2405.00675", trl="`sppo_hard`"),
    "aot": LossSpec(
        aot_loss, "policy", POLICY_LOGPS, ("beta", "label_smoothing") + _LD, "aot",
        "Alignment via Optimal Transport (AOT)",
        "Distributional alignment: the batch's sorted policy log-ratio margins are matched by rank with the "
        "reference's (first-order stochastic dominance), through a smoothed logistic loss.", tags=("aot",),
        formula="smoothed logistic of sort_i(log π(y_w)/π(y_l)) − sort_i(log π_ref(y_w)/π_ref(y_l)), over the batch",
        paper="Melnyk et al. 2024, arXiv:2406.05882", trl="`aot`"),
    "aot_unpaired": LossSpec(
        aot_unpaired_loss, "policy", POLICY_LOGPS, ("beta", "label_smoothing") + _LD, "aot",
        "Alignment via Optimal Transport (AOT, unpaired)",
        "Distributional alignment of the chosen over the rejected log-ratios, each sorted over the batch on its own.",
        tags=("aot",), formula="smoothed logistic of sort_i(ρ_w) − sort_i(ρ_l), over the batch",
        paper="Melnyk et al. 2024, arXiv:2406.05882", trl="`aot_unpaired`"),
    "apo_zero": LossSpec(
        apo_zero_loss, "policy", POLICY_LOGPS, ("beta",) + _LD + _WPO, "apo", "Anchored Preference Optimization (APO)",
        "APO-zero: the chosen responses are better than the model's own, so raise the chosen likelihood and lower "
        "the rejected one, each anchored at the reference.", tags=("apo",),
        formula="(1 − σ(βρ_w)) + σ(βρ_l)", paper="D'Oosterlinck et al. 2024, arXiv:2408.06266", trl="`apo_zero`"),
    "apo_down": LossSpec(
        apo_down_loss, "policy", POLICY_LOGPS, ("beta",) + _LD + _WPO, "apo", "Anchored Preference Optimization (APO)",
        "APO-down: the chosen responses are worse than the model's own, so lower both likelihoods, the rejected "
        "one more.", tags=("apo",),
        formula="σ(βρ_w) + (1 − σ(βΔ))", paper="D'Oosterlinck et al. 2024, arXiv:2408.06266", trl="`apo_down`"),
    "discopop": LossSpec(
        discopop_loss, "policy", POLICY_LOGPS, ("beta", "discopop_tau") + _F + _LD + _WPO, "discopop",
        "DiscoPOP (log-ratio modulated loss)",
        "A blend of the logistic (DPO) and exponential losses, weighted by σ(βΔ/τ); found by an LLM-driven "
        "search over objectives.", tags=("discopop",),
        formula="(1 − m)(−log σ(βΔ)) + m·exp(−βΔ), m = σ(βΔ/τ)", paper="Lu et al. 2024, arXiv:2406.08414",
        trl="`discopop`"),
    "sft": LossSpec(
        sft_loss, "policy", ("nll_chosen_logps", "chosen_lengths"), _WPO, "sft_pairs",
        "Supervised fine-tuning on the chosen responses",
        "The chosen responses' negative log-likelihood, a token mean over the batch: TRL's `sft` term of RPO "
        "and MPO; alone it needs no reference model.", tags=("sft",),
        formula="−Σ log π(y_w|x) / Σ|y_w| over the batch", paper="Ouyang et al. 2022 (SFT); as a DPO term: "
        "Pang et al. 2024", trl="`sft`"),
    "kto": LossSpec(
        kto_loss, "policy", _UNPAIRED + ("policy_kl_logps", "reference_kl_logps", "label"), _UNPAIRED_SETTINGS, "kto",
        "Kahneman-Tversky Optimization (KTO)",
        "Prospect-theoretic loss on unpaired desirable and undesirable completions, each judged against a "
        "reference point: the policy's KL from the reference, estimated on mismatched completions of the batch.",
        tags=("kto",), formula="λ_D(1 − σ(β(ρ − z₀))) if desirable, λ_U(1 − σ(β(z₀ − ρ))) if not; "
        "z₀ = max(0, mean_i log π(y'_i|x_i)/π_ref(y'_i|x_i))", paper="Ethayarajh et al. 2024, arXiv:2402.01306",
        trl="`KTOTrainer`, `loss_type=\"kto\"`", defaults={**TRAINING_DEFAULTS, "shuffle": False}),
    "apo_zero_unpaired": LossSpec(
        apo_zero_unpaired_loss, "policy", _UNPAIRED + ("label",), _UNPAIRED_SETTINGS, "apo",
        "Anchored Preference Optimization (APO, unpaired)",
        "APO-zero on unpaired data: raise the likelihood of desirable completions, lower that of undesirable ones, "
        "anchored at the reference; no KL estimate.", tags=("apo",),
        formula="λ_D(1 − σ(βρ)) if desirable, λ_U σ(βρ) if not", paper="D'Oosterlinck et al. 2024, arXiv:2408.06266",
        trl="`KTOTrainer`, `loss_type=\"apo_zero_unpaired\"`"),
    "cpo": LossSpec(
        cpo_loss, "policy", _CPO_INPUTS, ("beta", "label_smoothing", "cpo_alpha", "alphapo_alpha"), "cpo",
        _CPO_TITLE, _CPO_SUMMARY, tags=("cpo",),
        formula="−log σ(β(log π(y_w) − log π(y_l))) + cpo_alpha · NLL(y_w)", paper=_CPO_PAPER,
        trl="`experimental.cpo`, `loss_type=\"sigmoid\"`"),
    "cpo_hinge": LossSpec(
        cpo_hinge_loss, "policy", _CPO_INPUTS, ("beta", "cpo_alpha", "alphapo_alpha"), "cpo", _CPO_TITLE,
        _CPO_SUMMARY, tags=("cpo",), formula="relu(1 − β(log π(y_w) − log π(y_l))) + cpo_alpha · NLL(y_w)",
        paper=_CPO_PAPER, trl="`experimental.cpo`, `loss_type=\"hinge\"`"),
    "cpo_ipo": LossSpec(
        cpo_ipo_loss, "policy", _CPO_INPUTS, ("beta", "cpo_alpha", "alphapo_alpha"), "cpo", _CPO_TITLE,
        _CPO_SUMMARY, tags=("cpo",), formula="(avg log π(y_w) − avg log π(y_l) − 1/(2β))² + cpo_alpha · NLL(y_w)",
        paper=_CPO_PAPER, trl="`experimental.cpo`, `loss_type=\"ipo\"`", average_logps=True),
    "simpo": LossSpec(
        simpo_loss, "policy", _CPO_INPUTS, ("beta", "label_smoothing", "simpo_gamma", "cpo_alpha", "alphapo_alpha"),
        "simpo", "Simple Preference Optimization (SimPO)",
        "Reference-free: the average per-token log-prob is the reward, with a target margin γ; no reference model "
        "is loaded (cpo_alpha > 0 adds CPO's NLL: CPO-SimPO; alphapo_alpha ≠ 0 is AlphaPO).", tags=("simpo",),
        formula="−log σ(β(avg log π(y_w) − avg log π(y_l)) − γ)", paper="Meng et al. 2024, arXiv:2405.14734; "
        "AlphaPO: Gupta et al. 2025, arXiv:2501.03884",
        trl="`experimental.cpo`, `loss_type=\"simpo\"` with `cpo_alpha=0` (TRL's SimPO recipe; its CPOConfig "
        "default is 1)", defaults={**TRAINING_DEFAULTS, "cpo_alpha": 0.0}, average_logps=True),
    "orpo": LossSpec(
        orpo_loss, "policy", _CPO_INPUTS + ("prompt_logps", "prompt_lengths"), ("beta",), "orpo",
        "Odds Ratio Preference Optimization (ORPO)",
        "Reference-free and monolithic: the SFT loss plus λ times a log-sigmoid of the log odds ratio between the "
        "chosen and the rejected response (λ = beta); no reference model is loaded.", tags=("orpo",),
        formula="NLL(x, y_w) − β log σ(log odds(y_w|x) − log odds(y_l|x)), odds = P/(1 − P), P = exp(avg log π)",
        paper="Hong et al. 2024, arXiv:2403.07691", trl="`experimental.orpo`", average_logps=True),
    "gpo": LossSpec(
        gpo_loss, "policy", POLICY_LOGPS + ("chosen_score", "rejected_score"), ("beta",), "gpo",
        "General Preference Optimization (GPO) with a General Preference Model (GPM)",
        "Self-play where a GPM embeds each response and scores preferences with a skew-symmetric form, "
        "capturing intransitive preferences in K passes instead of K².",
        record_fields=("chosen_score", "rejected_score"), self_play=True, tags=("gpo", "gpm", "self-play"),
        formula="(ρ_w − η ŝ_w)² + (ρ_l − η ŝ_l)², η = 1/β", paper="Zhang et al. 2024, arXiv:2410.02197", trl="—"),
    "reward": LossSpec(
        bradley_terry_loss, "preference_model", ("chosen_rewards", "rejected_rewards"), ("head.pooling",), "reward",
        "Bradley–Terry reward model",
        "A scalar reward head on the backbone, trained on preference pairs with -log σ(r_w − r_l).",
        tags=("reward-model",), defaults=PREFERENCE_MODEL_DEFAULTS, formula="−log σ(r_w − r_l)",
        paper="Ouyang et al. 2022, arXiv:2203.02155", trl="`RewardTrainer`"),
    "gpm": LossSpec(
        gpm_loss, "preference_model", ("chosen_embeddings", "rejected_embeddings"),
        ("head.k", "head.tau", "head.gates", "head.pooling"), "gpm", "General Preference embedding Model (GPM)",
        "Embeds each response in R^{2k} and scores preferences with a skew-symmetric form, "
        "-log σ(s(y_w ≻ y_l)/τ), so intransitive preferences can be learned.", tags=("gpm", "preference-model"),
        defaults=PREFERENCE_MODEL_DEFAULTS, formula="−log σ(⟨R v_w, v_l⟩/τ)",
        paper="Zhang et al. 2024, arXiv:2410.02197", trl="—"),
}

LOSSES: dict[str, Callable[..., LossOutput]] = {name: spec.fn for name, spec in LOSS_SPECS.items()}
SELF_PLAY_OBJECTIVES = tuple(name for name, spec in LOSS_SPECS.items() if spec.self_play)


def get_loss(objective: str) -> Callable[..., LossOutput]:
    """The loss function for ``objective``; a ConfigError lists the known names."""
    try:
        return LOSSES[objective]
    except KeyError:
        raise ConfigError(
            f"objective: unknown objective {objective!r}; expected one of {sorted(LOSSES)}"
        ) from None
