"""The `train` stage: preference optimisation (DPO, IPO, hinge, RPO, DPOP, SPPO, GPO) on the shared loop.

Also trains preference models (`objective: reward` or `gpm`, podium.training.preference_model) on the same loop.

    podium train dpo.yaml beta=0.1 objective=dpop lambda=50

`objective` is a name of `podium.losses.LOSS_SPECS`, which also says which settings it takes
(`beta`, `lambda`, ...; docs/OBJECTIVES.md). Its kind selects a builder from `BUILDERS`: "policy"
objectives train on pairs against cached reference log-probs; "preference_model" objectives
(`reward`, `gpm`, podium.training.preference_model) put a head on the backbone.
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
from podium.data.preference import read_pairs, tokenize_pairs
from podium.data.response_batches import make_pair_collate
from podium.errors import DataError
from podium.losses import LOSS_SPECS, SETTINGS, TRAINING_DEFAULTS, check_records
from podium.models.heads import build_preference_model
from podium.models.io import (
    POLICY,
    AttnImplementation,
    check_weights_format,
    choose_attn_implementation,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from podium.refs import ModelRef
from podium.stages import StageContext, stage
from podium.training.attention_masks import check_causal, exact_layout
from podium.training.loop import train_loop
from podium.training.lora import LoraSettings, apply_lora, save_lora
from podium.training.preference_model import PREFERENCE_MODEL_OBJECTIVES
from podium.training.preference_objective import PreferenceObjective, make_collate
from podium.training.reference import cached_reference_logps, sharded_reference_logps, sharded_training
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

    objective: str = Field("dpo", description="a name of podium.losses.LOSS_SPECS (docs/OBJECTIVES.md)")
    model: ModelRef
    reference: ModelRef | None = None
    data: Mixture = Field(description="pairs: a JSONL file, a dataset or a mixture with per-source counts")
    # Objective settings (podium.losses.SETTINGS); each objective accepts those its LOSS_SPECS entry lists.
    beta: float = objective_setting("beta")
    lambda_: float = objective_setting("lambda")
    alpha: float = objective_setting("alpha")
    label_smoothing: float = objective_setting("label_smoothing")
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

    @model_validator(mode="before")
    @classmethod
    def _objective_defaults(cls, data):
        """Settings the recipe leaves out start from the objective's defaults (`LossSpec.defaults`)."""
        if isinstance(data, dict):
            objective = data.get("objective", "dpo")
            spec = LOSS_SPECS.get(objective) if isinstance(objective, str) else None
            if spec is not None:
                data = {**spec.defaults, **data}
        return data

    @model_validator(mode="after")
    def _check_train(self):
        if self.objective not in LOSS_SPECS:
            raise invalid(("objective",), f"unknown objective {self.objective!r}; known: {', '.join(LOSS_SPECS)}",
                          self.objective)
        spec = LOSS_SPECS[self.objective]
        takes = ", ".join(spec.settings) or "no objective settings"
        for key, setting in SETTINGS.items():
            if "." not in key and setting.field in self.model_fields_set and key not in spec.settings:
                raise invalid((key,), f"objective {self.objective!r} does not use {key!r} (it takes {takes})",
                              getattr(self, setting.field))
        for name, value in self.head.items():
            key = f"head.{name}"
            if key not in spec.settings:
                raise invalid(("head", name), f"objective {self.objective!r} has no head option {name!r} "
                              f"(it takes {takes})", value)
            if problem := SETTINGS[key].problem(value):
                raise invalid(("head", name), problem, value)
        return self

    def loss_kwargs(self) -> dict[str, float]:
        """The objective's settings under its loss function's keywords (`lambda` -> `lambda_`)."""
        spec = LOSS_SPECS[self.objective]
        return {SETTINGS[k].arg: getattr(self, SETTINGS[k].field) for k in spec.settings
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
    """Policy (optionally LoRA-wrapped), pairs and cached reference log-probs for a LOSSES objective."""
    tokenizer = load_tokenizer(cfg.model)
    rows = read_pairs(cfg.data, seed=cfg.seed, log=ctx.log)
    check_records(cfg.objective, rows, source=str(cfg.data))
    examples, stats = tokenize_pairs(rows, tokenizer, cfg.max_length)
    if not examples:
        raise DataError(f"{str(cfg.data)[:200]}: all {stats.read} pairs were dropped ({stats.dropped})")
    ctx.log.info("train: %d pairs kept of %d read; dropped %s", stats.kept, stats.read, stats.dropped or "none")
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
    ref_kwargs = {"cache_dir": cfg.reference_cache_dir, "batch_size": cfg.reference_batch_size}
    if sharded_training():
        # FSDP / ZeRO-3: a sharded copy of the reference (the base model when LoRA is on) scores the pairs.
        source = cfg.reference or cfg.model
        ref_logps, hit = sharded_reference_logps(lambda: _load(cfg, source), source, examples, tokenizer.pad_token_id,
                                                 dtype=cfg.dtype, prefix_sharing=prefix_sharing,
                                                 padding_free=padding_free, **ref_kwargs)
    elif cfg.reference is not None:
        ref_model = _load(cfg, cfg.reference)
        check_causal(ref_model)
        ref_ps, ref_pf = exact_layout(ref_model, cfg.prefix_sharing, cfg.padding_free, ctx.log)
        ref_logps, hit = cached_reference_logps(ref_model, examples, tokenizer.pad_token_id,
                                                prefix_sharing=ref_ps, padding_free=ref_pf, **ref_kwargs)
        del ref_model
    else:
        # The frozen copy of `model` is the model before training: its log-probs are all we need of it.
        ref_logps, hit = cached_reference_logps(model, examples, tokenizer.pad_token_id,
                                                adapter_disabled=cfg.lora is not None, prefix_sharing=prefix_sharing,
                                                padding_free=padding_free, **ref_kwargs)
    objective = PreferenceObjective(cfg.objective, router_aux_loss_coef=router_coef, **cfg.loss_kwargs())
    collate = make_collate(tokenizer.pad_token_id, ref_logps, prefix_sharing=prefix_sharing,
                           padding_free=padding_free)
    metrics = {**stats.as_metrics(), "reference/cache_hit": float(hit)}
    save_final = ((lambda m, d, **kw: save_lora(m, tokenizer, d, cfg.lora, base=cfg.model, **kw))
                  if cfg.lora is not None else None)
    return TrainParts(model, tokenizer, objective, examples, collate, metrics, save_final)


def _load(cfg: TrainConfig, path: str):
    return load_model(path, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation, rank_local=True)


def build_preference_model_parts(cfg: TrainConfig, ctx: StageContext) -> TrainParts:
    """A reward (Bradley-Terry) or GPM head on the backbone of `model`, trained on pairs."""
    tokenizer = load_tokenizer(cfg.model)
    rows = read_pairs(cfg.data, seed=cfg.seed, log=ctx.log)
    check_weights_format(cfg.model, POLICY["allow_pickle"])
    backbone = AutoModel.from_pretrained(cfg.model, dtype=resolve_dtype(cfg.dtype),
                                         trust_remote_code=POLICY["trust_remote_code"], use_safetensors=True,
                                         **choose_attn_implementation(cfg.model, cfg.attn_implementation, base=True))
    model = build_preference_model(cfg.objective, backbone, **cfg.head)
    collate = make_pair_collate(tokenizer, cfg.max_length)
    return TrainParts(model, tokenizer, PREFERENCE_MODEL_OBJECTIVES[cfg.objective], rows, collate,
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
    parts = BUILDERS[LOSS_SPECS[cfg.objective].kind](cfg, ctx)
    result = train_loop(parts.model, parts.objective, parts.examples, parts.collate, loop_settings(cfg),
                        Path(ctx.out_dir), tokenizer=parts.tokenizer, example_unit="pairs", log=ctx.log,
                        save_final=parts.save_final,
                        show_progress=ctx.show_progress)
    out = {k: float(v) for k, v in (result or {}).items() if isinstance(v, (int, float))}
    return {**parts.metrics, **out}
