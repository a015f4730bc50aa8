"""LoRA through peft: settings, wrapping, and saving (adapter + merged model)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from podium.models.io import save_model


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    merge: bool = Field(True, description="also save the adapter merged into the base weights")


def apply_lora(model, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model  # peft takes seconds to import; only LoRA runs need it

    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def save_lora(model, tokenizer, out_dir: Path, lora: LoraSettings) -> None:
    """Adapter into out_dir/adapter; the merged full model into out_dir (so later stages load it)."""
    model.save_pretrained(out_dir / "adapter", safe_serialization=True)
    if lora.merge:
        save_model(model.merge_and_unload(), tokenizer, out_dir)
