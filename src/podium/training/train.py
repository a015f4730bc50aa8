"""The `train` stage: preference optimisation (DPO, IPO, hinge, RPO, DPOP, SPPO, GPO) on the shared loop.

Also trains preference models (`objective: reward` or `gpm`, podium.judging) on the same loop.

    podium train dpo.yaml beta=0.1 objective=dpop lambda=50

`objective` selects a builder from `OBJECTIVES`; every name of the `podium.losses.LOSSES`
registry maps to the preference builder (pairs, policy vs cached reference log-probs); `reward`
and `gpm` map to podium.judging's preference-model builder. A new family adds an entry.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, model_validator

from podium.errors import ConfigError, DataError
from podium.stages import StageContext, stage
from podium.training.lora import LoraSettings, apply_lora, save_lora
from podium.training.settings import TrainSettings

log = logging.getLogger("podium")

PREFERENCE_OBJECTIVES = ("dpo", "ipo", "hinge", "rpo", "dpop", "sppo", "sppo_single", "sppo_hard", "gpo")
# Learning rate when a config sets none: TRL's defaults (DPOConfig 1e-6, RewardConfig 1e-4). At 1e-6 a
# preference model on a fine-tuned backbone does not move in 5 epochs; at 1e-4 it learns (effects_notes §4).
DEFAULT_LEARNING_RATE = {"reward": 1e-4, "gpm": 1e-4}
POLICY_LEARNING_RATE = 1e-6


class TrainConfig(TrainSettings):
    """Settings of the `train` stage: the loop's optimisation settings plus these."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    objective: str = "dpo"
    model: str
    reference: str | None = None
    data: str | list | dict = Field(description="pairs: a JSONL file, a dataset or a mixture with per-source counts")
    # Loss parameters (DESIGN.md "Losses"); each loss reads the ones its LOSS_SPECS entry names.
    beta: float = 0.1
    lambda_: float = Field(50.0, alias="lambda")
    alpha: float = 1.0
    label_smoothing: float = 0.0
    learning_rate: float | None = Field(None, gt=0, description="default: 1e-4 for reward/gpm, 1e-6 otherwise (TRL's)")
    # Data and forward.
    max_length: int | None = 1024
    lora: LoraSettings | None = None
    prefix_sharing: bool = True
    padding_free: bool = False
    dtype: str = "float32"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = "sdpa"
    head: dict[str, Any] = Field(default_factory=dict, description="reward/gpm head options: k, tau, gates")
    reference_batch_size: int = 8
    reference_cache_dir: str | None = None

    @model_validator(mode="after")
    def _check_train(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective {self.objective!r} is unknown; known: {', '.join(sorted(OBJECTIVES))}")
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATE.get(self.objective, POLICY_LEARNING_RATE)
        if self.prefix_sharing and self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError("prefix_sharing needs attn_implementation sdpa or eager; "
                              "set prefix_sharing: false to use flash attention (padding_free works with it)")
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
    save_final: Callable | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def loss_params(cfg: TrainConfig) -> dict[str, float]:
    """Loss hyper-parameters under the loss functions' names (the config key `lambda` is `lambda_`)."""
    return {"beta": cfg.beta, "lambda_": cfg.lambda_, "alpha": cfg.alpha, "label_smoothing": cfg.label_smoothing}


def build_preference(cfg: TrainConfig, ctx: StageContext) -> TrainParts:
    """Policy (optionally LoRA-wrapped), pairs and cached reference log-probs for a LOSSES objective."""
    from podium.data.preference import read_pairs, tokenize_pairs
    from podium.losses import LOSS_SPECS, check_records
    from podium.models.io import load_tokenizer
    from podium.training.preference_objective import PreferenceObjective, make_collate
    from podium.training.reference import cached_reference_logps

    if LOSS_SPECS[cfg.objective].kind != "policy":
        raise ConfigError(f"objective {cfg.objective!r} is not a policy loss")
    tokenizer = load_tokenizer(cfg.model)
    rows = read_pairs(cfg.data, seed=cfg.seed, log=ctx.log)
    check_records(cfg.objective, rows, source=str(cfg.data))
    examples, stats = tokenize_pairs(rows, tokenizer, cfg.max_length)
    if not examples:
        raise DataError(f"{str(cfg.data)[:200]}: all {stats.read} pairs were dropped ({stats.dropped})")
    ctx.log.info("train: %d pairs kept of %d read; dropped %s", stats.kept, stats.read, stats.dropped or "none")
    model = _load(cfg, cfg.model)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
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
    objective = PreferenceObjective(cfg.objective, **loss_params(cfg))
    collate = make_collate(tokenizer.pad_token_id, ref_logps, prefix_sharing=cfg.prefix_sharing,
                           padding_free=cfg.padding_free)
    metrics = {**stats.as_metrics(), "reference/cache_hit": float(hit)}
    save_final = (lambda m, d: save_lora(m, tokenizer, d, cfg.lora)) if cfg.lora is not None else None
    return TrainParts(model, tokenizer, objective, examples, collate, metrics, save_final)


def _load(cfg: TrainConfig, path: str):
    from podium.models.io import load_model

    model = load_model(path, dtype=cfg.dtype)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(cfg.attn_implementation)
    else:
        model.config._attn_implementation = cfg.attn_implementation
    return model


def build_preference_model_parts(cfg: TrainConfig, ctx: StageContext) -> TrainParts:
    """A reward (Bradley-Terry) or GPM head on the backbone of `model`, trained on pairs (podium.judging)."""
    from transformers import AutoModel

    from podium.data.preference import read_pairs
    from podium.judging.objectives import OBJECTIVES as JUDGE_OBJECTIVES
    from podium.judging.pairs import make_pair_collate
    from podium.models.heads import build_preference_model
    from podium.models.io import POLICY, check_weights_format, load_tokenizer, resolve_dtype

    tokenizer = load_tokenizer(cfg.model)
    rows = read_pairs(cfg.data, seed=cfg.seed, log=ctx.log)
    check_weights_format(cfg.model, POLICY["allow_pickle"])
    backbone = AutoModel.from_pretrained(cfg.model, dtype=resolve_dtype(cfg.dtype),
                                         trust_remote_code=POLICY["trust_remote_code"], use_safetensors=True)
    model = build_preference_model(cfg.objective, backbone, **cfg.head)
    collate = make_pair_collate(tokenizer, cfg.max_length)
    return TrainParts(model, tokenizer, JUDGE_OBJECTIVES[cfg.objective], rows, collate,
                      {"pairs/read": float(len(rows))})


# objective name -> builder(cfg, ctx) -> TrainParts. Other families register more names here.
OBJECTIVES: dict[str, Callable[[TrainConfig, StageContext], TrainParts]] = {
    **{name: build_preference for name in PREFERENCE_OBJECTIVES},
    "reward": build_preference_model_parts,
    "gpm": build_preference_model_parts,
}


def loop_settings(cfg: TrainConfig) -> TrainSettings:
    """The loop's settings: the config's fields of the same names."""
    return TrainSettings.model_validate({k: getattr(cfg, k) for k in TrainSettings.model_fields})


@stage("train", TrainConfig, outputs={"model": "."})
def train(cfg: TrainConfig, ctx: StageContext) -> dict[str, float]:
    """Preference optimisation of `model` on pairs in `data` with a registry loss; saves the model."""
    from podium.training.loop import train_loop

    seed_everything(cfg.seed)
    parts = OBJECTIVES[cfg.objective](cfg, ctx)
    result = train_loop(parts.model, parts.objective, parts.examples, parts.collate, loop_settings(cfg),
                        Path(ctx.out_dir), tokenizer=parts.tokenizer, example_unit="pairs", log=ctx.log,
                        save_final=parts.save_final,
                        show_progress=ctx.show_progress)
    out = {k: float(v) for k, v in (result or {}).items() if isinstance(v, (int, float))}
    return {**parts.metrics, **out}
