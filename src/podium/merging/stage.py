"""Stage kind `merge`: a mergekit-style merge (inline or from a file) or a LoRA merge, into the stage folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from podium.config import invalid
from podium.errors import ConfigError
from podium.merging.config import load_config, parse_config
from podium.merging.executor import merge_lora, run_merge
from podium.refs import FileRef, ModelRef, RefKind
from podium.stages import StageConfig, StageContext, stage


def mergekit_models(config) -> Iterator[tuple[tuple, str]]:
    """The models a mergekit config names (key path, name): base_model, models[i].model, slices[i].sources[j].model."""
    if not isinstance(config, dict):
        return
    if isinstance(config.get("base_model"), str):
        yield ("base_model",), config["base_model"]
    for i, entry in enumerate(config.get("models") or []):
        if isinstance(entry, dict) and isinstance(entry.get("model"), str):
            yield ("models", i, "model"), entry["model"]
    for i, sl in enumerate(config.get("slices") or []):
        for j, src in enumerate(sl.get("sources") or [] if isinstance(sl, dict) else []):
            if isinstance(src, dict) and isinstance(src.get("model"), str):
                yield ("slices", i, "sources", j, "model"), src["model"]


class MergeStageConfig(StageConfig):
    """Give exactly one of: `config` (a mergekit config mapping), `config_file`, or `lora_adapter` + `lora_base`."""

    config: Annotated[dict[str, Any] | None, RefKind("model", mergekit_models)] = None
    config_file: FileRef | None = None
    lora_adapter: ModelRef | None = None
    lora_base: ModelRef | None = None
    dtype: str | None = None  # for a LoRA merge; a mergekit config has its own `dtype`
    seed: int | None = None  # DARE's random drop; default: the config's random_seed, else 0
    max_shard_size_mb: int = Field(2048, ge=1)

    @model_validator(mode="after")
    def one_source(self):
        given = [self.config is not None, self.config_file is not None, self.lora_adapter is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of `config`, `config_file` or `lora_adapter` (+ `lora_base`)")
        if (self.lora_adapter is None) != (self.lora_base is None):
            raise ValueError("`lora_adapter` and `lora_base` go together")
        # The mergekit config is checked now (method, parameters, ranges), so --dry-run finds its mistakes.
        try:
            if self.config is not None:
                parse_config(self.config, origin="config")
            elif self.config_file is not None and Path(self.config_file).is_file():
                load_config(self.config_file)
        except ConfigError as e:
            key = "config" if self.config is not None else "config_file"
            raise invalid((key,), str(e), getattr(self, key)) from None
        return self


def build_merge_config(cfg: MergeStageConfig, origin: str = "merge stage"):
    """The mergekit config of a `config` or `config_file` stage (a LoRA stage has none: see `merge_lora`)."""
    if cfg.config_file is not None:
        return load_config(cfg.config_file)
    return parse_config(cfg.config, origin=f"{origin}: config")


@stage("merge", MergeStageConfig, outputs={"model": "."})
def merge(cfg: MergeStageConfig, ctx: StageContext) -> dict[str, float]:
    """Merge models (linear, slerp, task_arithmetic, ties, dare_*, passthrough, model_stock) or fold a LoRA in."""
    if cfg.dtype and cfg.lora_adapter is None:
        raise ConfigError(f"stage {ctx.name}: `dtype` applies to a LoRA merge; put it inside the merge config")
    if cfg.lora_adapter is not None:
        return merge_lora(cfg.lora_base, cfg.lora_adapter, ctx.out_dir, dtype=cfg.dtype,
                          max_shard_size=cfg.max_shard_size_mb * 1024**2, progress=ctx.show_progress)
    merge_cfg = build_merge_config(cfg, origin=f"stage {ctx.name}")
    return run_merge(merge_cfg, ctx.out_dir, seed=cfg.seed, max_shard_size=cfg.max_shard_size_mb * 1024**2,
                     progress=ctx.show_progress)
