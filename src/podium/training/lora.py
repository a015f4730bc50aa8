"""LoRA through peft: settings, wrapping, and saving (adapter + merged model)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from podium.distributed.fsdp_load import adapters_on_host
from podium.errors import PodiumError
from podium.merging.executor import merge_lora
from podium.models.folder_checks import nonfinite_tensor
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
    with adapters_on_host(model):  # an empty model of rank-local loading (distributed/fsdp_load.py)
        return get_peft_model(model, config)


def save_lora(model, tokenizer, out_dir: Path, lora: LoraSettings, base: str | None = None,
              state_dict: dict | None = None) -> None:
    """Adapter into out_dir/adapter; the merged full model into out_dir (so later stages load it).

    `state_dict`: the gathered weights of a sharded run (FSDP, ZeRO-3), whose in-memory model holds
    only shards: the adapter is taken from it and merged into the `base` model's files, tensor by
    tensor (podium.merging.lora), instead of merging in memory.
    """
    weights = (state_dict if state_dict is not None else model.state_dict()).items()
    if (name := nonfinite_tensor((k, v) for k, v in weights if "lora_" in k)) is not None:
        raise PodiumError(f"{out_dir}: not saved: adapter weight {name} holds NaN or infinite values (the training "
                          "diverged)")
    if state_dict is None:
        model.save_pretrained(out_dir / "adapter", safe_serialization=True)
        if lora.merge:
            save_model(model.merge_and_unload(), tokenizer, out_dir)
        return
    model.save_pretrained(out_dir / "adapter", safe_serialization=True, state_dict=state_dict)
    if lora.merge:
        if base is None:
            raise ValueError("merging a sharded run's adapter needs the base model's path")
        merge_lora(base, out_dir / "adapter", out_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
