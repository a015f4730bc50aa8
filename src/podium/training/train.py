"""The `train` stage: preference optimisation (TRL's DPO loss family, KTO, CPO/SimPO, ORPO, DPOP, SPPO, GPO, ...)
on the shared loop.

Also trains preference models (`objective: reward` or `gpm`, podium.training.preference_model) on the same loop.

    podium train dpo.yaml beta=0.1 objective=dpop lambda=50

`objective` is a name of `podium.losses.LOSS_SPECS`, which also says which settings it takes
(`beta`, `lambda`, ...; docs/OBJECTIVES.md), or a list of names trained as a weighted sum (`objective:
[sigmoid, bco_pair, sft]`, `loss_weights: [0.8, 0.2, 1.0]`). Its kind selects a builder from `BUILDERS`:
"policy" objectives train on pairs (KTO: unpaired examples) against cached reference log-probs, or none
(reference-free: SimPO, CPO, ORPO); "preference_model" objectives (`reward`, `gpm`,
podium.training.preference_model) put a head on the backbone.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, Field, model_validator
from transformers import AutoModel

from podium.config import invalid
from podium.data.mixture import Mixture
from podium.data.preference import read_pairs
from podium.data.response_batches import make_pair_collate
from podium.errors import DataError, PodiumError
from podium.losses import LOSS_SPECS, SETTINGS, TRAINING_DEFAULTS, combination_problem, combined_settings, objective_names
from podium.models.attention_choice import AttnImplementation, choose_attn_implementation
from podium.models.folder_checks import check_weights_format, loading_problem
from podium.models.heads import build_preference_model
from podium.models.io import load_model, load_tokenizer, resolve_dtype
from podium.models.policy import current_policy
from podium.refs import ModelRef
from podium.stages import StageContext, stage
from podium.training.attention_masks import check_causal, exact_layout
from podium.training.loop import train_loop
from podium.training.lora import LoraSettings, apply_lora, save_lora
from podium.training.preference_inputs import needs_kl, read_examples, reference_logps
from podium.training.preference_model import PREFERENCE_MODEL_OBJECTIVES
from podium.training.preference_objective import PreferenceObjective, make_collate
from podium.training.reference import sharded_training
from podium.training.router_loss import router_aux_coef
from podium.training.settings import TrainSettings

log = logging.getLogger("podium")


def objective_setting(key: str):
    """The config field of objective setting `key`: default, bounds and meaning from `podium.losses.SETTINGS`."""
    s = SETTINGS[key]
    alias = key if s.field != key else None
    return Field(s.default, gt=s.gt, ge=s.ge, lt=s.lt, le=s.le, alias=alias, description=s.doc)


class TrainConfig(TrainSettings):
    """Settings of the `train` stage: the loop's optimisation settings plus these."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    objective: str | list[str] = Field("dpo", description="a name of podium.losses.LOSS_SPECS (docs/OBJECTIVES.md), "
                                       "or a list of them trained as a weighted sum (loss_weights)")
    loss_weights: list[float] | None = Field(None, description="one weight per objective of a list (TRL's "
                                             "loss_weights, e.g. MPO's [0.8, 0.2, 1.0]); default 1 each")
    model: ModelRef
    reference: ModelRef | None = None
    data: Mixture = Field(description="pairs: a JSONL file, a dataset or a mixture with per-source counts")
    # Objective settings (podium.losses.SETTINGS); each objective accepts those its LOSS_SPECS entry lists.
    beta: float = objective_setting("beta")
    lambda_: float = objective_setting("lambda")
    alpha: float = objective_setting("alpha")
    label_smoothing: float = objective_setting("label_smoothing")
    f_divergence_type: str = objective_setting("f_divergence_type")
    f_alpha_divergence_coef: float = objective_setting("f_alpha_divergence_coef")
    ld_alpha: float | None = objective_setting("ld_alpha")
    use_weighting: bool = objective_setting("use_weighting")
    discopop_tau: float = objective_setting("discopop_tau")
    desirable_weight: float = objective_setting("desirable_weight")
    undesirable_weight: float = objective_setting("undesirable_weight")
    cpo_alpha: float = objective_setting("cpo_alpha")
    simpo_gamma: float = objective_setting("simpo_gamma")
    alphapo_alpha: float = objective_setting("alphapo_alpha")
    head: dict[str, Any] = Field(default_factory=dict,
                                 description="reward/gpm head options (reward: pooling; gpm: k, tau, gates, pooling)")
    # The default is the objective's (LossSpec.defaults, TRL's 1e-6 for DPO); the loop's own suits SFT.
    learning_rate: float = Field(TRAINING_DEFAULTS["learning_rate"], gt=0)
    # Data and forward.
    max_length: int | None = Field(1024, ge=8)
    lora: LoraSettings | None = None
    prefix_sharing: bool = True
    padding_free: bool = False
    dtype: str = "float32"
    attn_implementation: AttnImplementation = None
    router_aux_loss_coef: float | None = Field(
        None, ge=0, description="MoE router loss weight; unset: the model config's (as TRL), 0: off")
    reference_batch_size: int = Field(8, ge=1)
    reference_cache_dir: str | None = None

    @property
    def objectives(self) -> tuple[str, ...]:
        """The objective's names: one, or the components of a weighted sum."""
        return objective_names(self.objective)

    @model_validator(mode="before")
    @classmethod
    def _objective_defaults(cls, data):
        """Settings the recipe leaves out start from the objective's defaults (`LossSpec.defaults`; for a list,
        the first objective that has one)."""
        if isinstance(data, dict):
            objective = data.get("objective", "dpo")
            names = [objective] if isinstance(objective, str) else objective if isinstance(objective, list) else []
            defaults = {}
            for name in reversed(names):
                spec = LOSS_SPECS.get(name) if isinstance(name, str) else None
                if spec is not None:
                    defaults.update(spec.defaults)
            data = {**defaults, **data}
        return data

    @model_validator(mode="after")
    def _check_train(self):
        names = self.objectives
        if problem := combination_problem(names, self.loss_weights):
            key, why = problem
            raise invalid((key,), why, getattr(self, key))
        specs = [LOSS_SPECS[n] for n in names]
        label = names[0] if len(names) == 1 else list(names)
        accepted = combined_settings(names)
        takes = ", ".join(accepted) or "no objective settings"
        for key, setting in SETTINGS.items():
            if "." in key or setting.field not in self.model_fields_set:
                continue
            value = getattr(self, setting.field)
            if key not in accepted:
                raise invalid((key,), f"objective {label!r} does not use {key!r} (it takes {takes})", value)
            for spec in specs:  # an objective may narrow a setting's range (EXO: label_smoothing > 0)
                if key in spec.settings and (problem := spec.setting(key).problem(value)):
                    raise invalid((key,), problem, value)
        for name, value in self.head.items():
            key = f"head.{name}"
            if key not in accepted:
                raise invalid(("head", name), f"objective {label!r} has no head option {name!r} "
                              f"(it takes {takes})", value)
            if problem := SETTINGS[key].problem(value):
                raise invalid(("head", name), problem, value)
        if self.reference is not None and all(s.reference_free for s in specs):
            raise invalid(("reference",), f"objective {label!r} is reference-free: it loads no reference model "
                          "(remove `reference`)", self.reference)
        if needs_kl(names) and self.batch_size < 2:
            raise invalid(("batch_size",), "KTO estimates its KL term from the other examples of a batch: batch_size "
                          "must be >= 2 (TRL requires the same)", self.batch_size)
        return self

    def loss_kwargs(self) -> dict[str, float]:
        """The objective's settings under its loss function's keywords (`lambda` -> `lambda_`)."""
        return {SETTINGS[k].arg: getattr(self, SETTINGS[k].field) for k in combined_settings(self.objectives)
                if "." not in k and SETTINGS[k].arg}


@dataclass
class TrainParts:
    """What an objective builder hands to the loop."""

    model: Any
    tokenizer: Any
    objective: Callable
    examples: list
    collate: Callable
    metrics: dict[str, float]
    save_final: Callable | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_preference(cfg: TrainConfig, ctx: StageContext) -> TrainParts:
    """Policy (optionally LoRA-wrapped), examples and cached reference log-probs (none when reference-free)."""
    tokenizer = load_tokenizer(cfg.model)
    names = cfg.objectives
    examples, stats = read_examples(names, cfg.data, tokenizer, max_length=cfg.max_length,
                                    batch_size=cfg.batch_size, seed=cfg.seed, log=ctx.log, stage=ctx.name)
    if not examples:
        raise DataError(f"{str(cfg.data)[:200]}: all {stats.read} examples were dropped ({stats.dropped})")
    ctx.log.info("train: %d %s kept of %d read; dropped %s", stats.kept,
                 "examples" if any(LOSS_SPECS[n].unpaired for n in names) else "pairs", stats.read,
                 stats.dropped or "none")
    if needs_kl(names) and cfg.shuffle:
        ctx.log.warning("train: shuffle is on, so a batch's KL completions come from other batches' examples "
                        "(TRL requires sequential batches for KTO; podium's default for it is shuffle: false)")
    model = _load(cfg, cfg.model)
    # Speed features a model cannot run exactly are turned off for it (logged); see attention_masks.
    prefix_sharing, padding_free = exact_layout(model, cfg.prefix_sharing, cfg.padding_free, ctx.log)
    if prefix_sharing and not padding_free and sharded_training():
        # The prompt cache's keys and values cross two forwards; a sharded model's backward hooks miss that path.
        ctx.log.info("prefix_sharing off under a sharded launch (its prompt cache spans two forwards); "
                     "padding_free: true keeps it in one forward")
        prefix_sharing = False
    router_coef = router_aux_coef(model, cfg.router_aux_loss_coef)
    check_causal(model)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    objective = PreferenceObjective(names, loss_weights=cfg.loss_weights, ld_alpha=cfg.ld_alpha,
                                    use_weighting=cfg.use_weighting, router_aux_loss_coef=router_coef,
                                    **cfg.loss_kwargs())
    metrics = stats.as_metrics()
    ref_logps = ld_ref = None
    if objective.reference_free:
        ctx.log.info("train: objective %s is reference-free: no reference model, no reference pass", cfg.objective)
    else:
        ld_alpha = cfg.ld_alpha if any(x is not None for x in objective.ld_alpha) else None
        ref_logps, ld_ref, hit = reference_logps(cfg, model, examples, tokenizer.pad_token_id, lambda p: _load(cfg, p),
                                                 prefix_sharing=prefix_sharing, padding_free=padding_free,
                                                 ld_alpha=ld_alpha, log=ctx.log)
        metrics["reference/cache_hit"] = float(hit)
    collate = make_collate(tokenizer.pad_token_id, ref_logps, prefix_sharing=prefix_sharing,
                           padding_free=padding_free, with_prompt=objective.with_prompt, unpaired=objective.unpaired,
                           ld_reference_logps=ld_ref)
    save_final = ((lambda m, d, **kw: save_lora(m, tokenizer, d, cfg.lora, base=cfg.model, **kw))
                  if cfg.lora is not None else None)
    return TrainParts(model, tokenizer, objective, examples, collate, metrics, save_final)


def _load(cfg: TrainConfig, path: str):
    return load_model(path, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation, rank_local=True)


def build_preference_model_parts(cfg: TrainConfig, ctx: StageContext) -> TrainParts:
    """A reward (Bradley-Terry) or GPM head on the backbone of `model`, trained on pairs."""
    tokenizer = load_tokenizer(cfg.model)
    rows = read_pairs(cfg.data, seed=cfg.seed, log=ctx.log)
    check_weights_format(cfg.model, current_policy().allow_pickle)
    backbone, info = AutoModel.from_pretrained(cfg.model, dtype=resolve_dtype(cfg.dtype),
                                               trust_remote_code=current_policy().trust_remote_code, use_safetensors=True,
                                               output_loading_info=True,
                                               **choose_attn_implementation(cfg.model, cfg.attn_implementation, base=True))
    if problem := loading_problem(info, f"model {cfg.model!r}"):  # the new head is the only random part
        raise PodiumError(problem)
    objective = cfg.objectives[0]
    model = build_preference_model(objective, backbone, **cfg.head)
    collate = make_pair_collate(tokenizer, cfg.max_length)
    return TrainParts(model, tokenizer, PREFERENCE_MODEL_OBJECTIVES[objective], rows, collate,
                      {"pairs/read": float(len(rows))})


# LossSpec.kind -> builder(cfg, ctx) -> TrainParts. A new kind of objective adds a builder here.
BUILDERS: dict[str, Callable[[TrainConfig, StageContext], TrainParts]] = {
    "policy": build_preference,
    "preference_model": build_preference_model_parts,
}


def loop_settings(cfg: TrainConfig) -> TrainSettings:
    """The loop's settings: the config's fields of the same names."""
    return TrainSettings.model_validate({k: getattr(cfg, k) for k in TrainSettings.model_fields})


@stage("train", TrainConfig, outputs={"model": "."}, distributed="train")
def train(cfg: TrainConfig, ctx: StageContext) -> dict[str, float]:
    """Preference optimisation of `model` on pairs in `data` with a registry loss; saves the model."""
    seed_everything(cfg.seed)
    parts = BUILDERS[LOSS_SPECS[cfg.objectives[0]].kind](cfg, ctx)
    result = train_loop(parts.model, parts.objective, parts.examples, parts.collate, loop_settings(cfg),
                        Path(ctx.out_dir), tokenizer=parts.tokenizer, example_unit="pairs", log=ctx.log,
                        save_final=parts.save_final,
                        show_progress=ctx.show_progress)
    out = {k: float(v) for k, v in (result or {}).items() if isinstance(v, (int, float))}
    return {**parts.metrics, **out}
