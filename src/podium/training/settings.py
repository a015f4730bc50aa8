"""Optimisation settings shared by every training stage (SFT, preference, reward models)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from podium.stages import StageConfig


class TrainSettings(StageConfig):
    learning_rate: float = Field(1e-4, gt=0)
    optimizer: Literal["adamw", "rmsprop", "sgd"] = "adamw"
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    batch_size: int = Field(8, ge=1, description="examples per micro-batch per process")
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    epochs: float = Field(1.0, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    shuffle: bool = True
    save_steps: int = Field(0, ge=0, description="checkpoint every N optimizer steps (0: never)")
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = Field(False, description="recompute each decoder layer in the backward instead of "
                                         "keeping its activations (transformers' gradient checkpointing)")
    detect_divergence: bool = Field(True, description="fail the stage when loss or weights blow up "
                                    "(thresholds in podium.training.divergence); non-finite values always fail")
    report_to: list[Literal["tensorboard", "wandb", "trackio", "mlflow"]] = Field(
        default_factory=list, description="experiment trackers (accelerate's), main process only; metrics.jsonl "
        "is always written")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        """`report_to: tensorboard` or a list, as TRL takes it; "none" is no tracker."""
        if v is None or v == "none":
            return []
        return [v] if isinstance(v, str) else v

    # A validator, not only `Field(gt=0)`: stages that change the default (SFT, train) redeclare the field,
    # and the range must hold for them too (SFT accepted learning_rate 0 and negative rates).
    @field_validator("learning_rate")
    @classmethod
    def _positive_finite_lr(cls, v: float) -> float:
        if not (v > 0 and math.isfinite(v)):
            raise ValueError("learning_rate must be a finite number > 0")
        return v
