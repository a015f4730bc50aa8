"""Stage `tiny_model`: build the embedded default model and tokenizer offline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from podium.models.io import save_model
from podium.models.tiny import build_tiny_model
from podium.stages import StageConfig, StageContext, stage


class TinyModelConfig(StageConfig):
    family: Literal["llama", "qwen2", "gemma2", "mistral", "mixtral"] = Field(
        "llama", description="the seed card family's architecture (podium.models.tiny.tiny_config), same tokenizer")
    hidden_size: int = Field(128, ge=8)
    intermediate_size: int = Field(384, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int | None = Field(None, ge=1)
    max_position_embeddings: int = Field(512, ge=1)
    tie_word_embeddings: bool = False
    seed: int = 0


@stage("tiny_model", TinyModelConfig, outputs={"model": "."})
def tiny_model(cfg: TinyModelConfig, ctx: StageContext) -> dict:
    """A tiny randomly initialised model of `family` (default Llama) + char-level chat tokenizer (no download)."""
    model, tokenizer = build_tiny_model(
        family=cfg.family, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_word_embeddings,
        seed=cfg.seed,
    )
    save_model(model, tokenizer, ctx.out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters())}
