"""The `train` stage: preference optimisation (DPO, IPO, hinge, RPO, DPOP, SPPO, GPO) on the shared loop.

    podium train dpo.yaml beta=0.1 objective=dpop lambda=50

`objective` selects a builder from `OBJECTIVES`; every name of the `podium.losses.LOSSES`
registry maps to the preference builder (pairs, policy vs cached reference log-probs). Other
families (e.g. `podium.judging`'s reward / GPM objectives) add their own entry to the dict.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from podium.errors import ConfigError
from podium.stages import StageConfig, StageContext, stage

log = logging.getLogger("podium")

PREFERENCE_OBJECTIVES = ("dpo", "ipo", "hinge", "rpo", "dpop", "sppo", "sppo_single", "sppo_hard", "gpo")


class LoraSettings(BaseModel):
    """LoRA adapter settings (peft): the reference is then the adapter-disabled model."""

    model_config = ConfigDict(extra="forbid")
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


class TrainConfig(StageConfig):
    """Settings of the `train` stage (preference optimisation)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    objective: str = "dpo"
    model: str
    reference: str | None = None
    data: str
    # Loss parameters (DESIGN.md "Losses"); each loss reads the ones it needs.
    beta: float = 0.1
    lambda_: float = Field(50.0, alias="lambda")
    alpha: float = 1.0
    label_smoothing: float = 0.0
    # Optimisation.
    learning_rate: float = 1e-6
    optimizer: Literal["adamw", "rmsprop"] = "adamw"
    weight_decay: float = 0.0
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = 0.0
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None
    epochs: float = 1.0
    max_grad_norm: float | None = 1.0
    seed: int = 42
    shuffle: bool = True
    save_steps: int | None = None
    # Data and forward.
    max_length: int | None = 1024
    lora: LoraSettings | None = None
    prefix_sharing: bool = True
    padding_free: bool = False
    dtype: str = "float32"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = "sdpa"
    reference_batch_size: int = 8
    reference_cache_dir: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective {self.objective!r} is unknown; known: {', '.join(sorted(OBJECTIVES))}")
        if self.prefix_sharing and self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError("prefix_sharing needs attn_implementation sdpa or eager; "
                              "set prefix_sharing: false to use flash attention (padding_free works with it)")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ConfigError("batch_size and gradient_accumulation_steps must be >= 1")
        return self


@dataclass
class TrainParts:
    """What an objective builder hands to the loop."""

    model: Any
    tokenizer: Any
    objective: Callable
    examples: list
    collate: Callable
    metrics: dict[str, float]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def loss_params(cfg: TrainConfig) -> dict[str, float]:
    """Loss hyper-parameters under the names the loss functions may use."""
    return {"beta": cfg.beta, "lambda_": cfg.lambda_, "lam": cfg.lambda_, "alpha": cfg.alpha,
            "label_smoothing": cfg.label_smoothing, "eta": 1.0 / cfg.beta}


def build_preference(cfg: TrainConfig, ctx: StageContext) -> TrainParts:
    """Policy (optionally LoRA-wrapped), pairs and cached reference log-probs for a LOSSES objective."""
    from podium.data.preference import load_preference_data
    from podium.losses import LOSSES
    from podium.models.io import load_tokenizer
    from podium.training.preference_objective import PreferenceObjective, make_collate
    from podium.training.reference import cached_reference_logps

    if cfg.objective not in LOSSES:
        raise ConfigError(f"objective {cfg.objective!r} has no loss in podium.losses.LOSSES")
    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    examples, stats = load_preference_data(cfg.data, tokenizer, cfg.max_length)
    ctx.log.info("train: %d pairs kept of %d read; dropped %s", stats.kept, stats.read, stats.dropped or "none")
    model = _load(cfg, cfg.model)
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM"))
    ref_kwargs = {"cache_dir": cfg.reference_cache_dir, "batch_size": cfg.reference_batch_size,
                  "prefix_sharing": cfg.prefix_sharing, "padding_free": cfg.padding_free}
    if cfg.reference is not None:
        ref_model = _load(cfg, cfg.reference)
        ref_logps, hit = cached_reference_logps(ref_model, examples, tokenizer.pad_token_id, **ref_kwargs)
        del ref_model
    else:
        # The frozen copy of `model` is the model before training: its log-probs are all we need of it.
        ref_logps, hit = cached_reference_logps(model, examples, tokenizer.pad_token_id,
                                                adapter_disabled=cfg.lora is not None, **ref_kwargs)
    objective = PreferenceObjective(LOSSES[cfg.objective], **loss_params(cfg))
    collate = make_collate(tokenizer.pad_token_id, ref_logps, prefix_sharing=cfg.prefix_sharing,
                           padding_free=cfg.padding_free)
    metrics = {**stats.as_metrics(), "reference/cache_hit": float(hit)}
    return TrainParts(model, tokenizer, objective, examples, collate, metrics)


def _load(cfg: TrainConfig, path: str):
    from podium.models.io import load_model

    model = load_model(path, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(cfg.attn_implementation)
    else:
        model.config._attn_implementation = cfg.attn_implementation
    return model


# objective name -> builder(cfg, ctx) -> TrainParts. Other families register more names here.
OBJECTIVES: dict[str, Callable[[TrainConfig, StageContext], TrainParts]] = {
    name: build_preference for name in PREFERENCE_OBJECTIVES
}


def loop_settings(cfg: TrainConfig):
    """The loop's `TrainSettings` filled from the config fields of the same name."""
    from podium.training.loop import TrainSettings

    values = cfg.model_dump()
    if dataclasses.is_dataclass(TrainSettings):
        names = {f.name for f in dataclasses.fields(TrainSettings)}
    else:
        names = set(TrainSettings.model_fields)
    return TrainSettings(**{k: v for k, v in values.items() if k in names})


@stage("train", TrainConfig, outputs={"model": "."})
def train(cfg: TrainConfig, ctx: StageContext) -> dict[str, float]:
    """Preference optimisation of `model` on pairs in `data` with a registry loss; saves the model."""
    from podium.training.loop import train_loop

    seed_everything(cfg.seed)
    parts = OBJECTIVES[cfg.objective](cfg, ctx)
    result = train_loop(parts.model, parts.objective, parts.examples, parts.collate, loop_settings(cfg),
                        Path(ctx.out_dir), tokenizer=parts.tokenizer)
    out = {k: float(v) for k, v in (result or {}).items() if isinstance(v, (int, float))}
    return {**parts.metrics, **out}
