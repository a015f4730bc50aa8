"""Supervised fine-tuning on a dataset mixture: loss on completion tokens only.

`stop_at: {accuracy: 0.3}` trains to a target instead of a fixed step count: every `every` steps
the model answers held-out prompts of the task it learns (greedy), and training stops once its
accuracy reaches the target (at most `max_steps`). The prompts are the task's train-split items
that are not in the SFT data, so the test split stays unseen. A short fixed step count lands on a
different point of a steep learning curve for every seed; a target lands on the same one.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from podium.data.chat import IGNORE, as_messages, tokenize_sft
from podium.data.collate import pack_batch, pad_batch
from podium.data.mixture import build_mixture
from podium.data.records import write_json
from podium.errors import ConfigError, DataError
from podium.evaluation.task_accuracy import task_accuracy
from podium.models.io import load_model, load_tokenizer, save_model
from podium.stages import StageContext, stage
from podium.tasks import get_task
from podium.training.loop import train_loop
from podium.training.lora import LoraSettings, apply_lora, save_lora
from podium.training.settings import TrainSettings


class StopAt(BaseModel):
    """Train until greedy accuracy on held-out prompts of a built-in task reaches `accuracy`."""

    model_config = ConfigDict(extra="forbid")

    accuracy: float = Field(gt=0, le=1)
    task: str | None = Field(None, description="default: the first task source of `data`")
    difficulty: dict | None = Field(None, description="default: that source's difficulty")
    count: int = Field(200, ge=1, description="held-out prompts per check")
    every: int = Field(100, ge=1, description="check every N optimizer steps")
    seed: int = 0


class SFTConfig(TrainSettings):
    model: str = Field(description="model folder, Hub id, or '@stage'")
    data: str | list | dict = Field(description="a dataset or a mixture of sources with per-source counts")
    max_length: int = Field(512, ge=8)
    packing: bool = Field(False, description="pack each micro-batch into one row without padding")
    lora: LoraSettings | None = None
    learning_rate: float = 1e-4
    stop_at: StopAt | None = None


def sft_objective(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Summed token NLL over completion tokens. logits [B, T, V], labels [B, T]."""
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    logits = model(**kwargs).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    loss_sum = F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum")
    return loss_sum, {}


def tokenize_dataset(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    examples, dropped = [], 0
    for r in rows:
        ex = tokenize_sft(r, tokenizer, max_length)
        if any(label != IGNORE for label in ex["labels"][1:]):
            examples.append(ex)
        else:
            dropped += 1  # prompt filled max_length: nothing left to learn from
    if not examples:
        raise DataError(f"no SFT example has completion tokens within max_length={max_length}")
    return examples, dropped


def held_out_items(stop: StopAt, data, rows: list[dict]) -> list[dict]:
    """`stop.count` train-split items of the target task whose prompts are not among the SFT rows."""
    from podium.data.mixture import as_sources

    source = next((s for s in as_sources(data) if s.task is not None), None)
    task = stop.task or (source.task if source else None)
    if task is None:
        raise ConfigError("sft stop_at: name a `task` (no built-in task source in `data`)")
    difficulty = stop.difficulty if stop.difficulty is not None else (
        source.difficulty if source is not None and source.task == task else {})
    seen = {as_messages(r["prompt"])[-1]["content"] for r in rows if "prompt" in r}
    drawn = get_task(task).items(4 * stop.count + 100, split="train", seed=10_000 + stop.seed, **difficulty)
    fresh = list({it["prompt"]: it for it in drawn if it["prompt"] not in seen}.values())[: stop.count]
    if not fresh:
        raise DataError(f"sft stop_at: every drawn {task} prompt is in the SFT data; nothing is held out")
    return fresh


@stage("sft", SFTConfig, outputs={"model": "."})
def sft(cfg: SFTConfig, ctx: StageContext) -> dict:
    """Supervised fine-tuning (completion-only loss) on a dataset mixture."""
    tokenizer = load_tokenizer(cfg.model)
    rows, counts = build_mixture(cfg.data, seed=cfg.seed, shuffle=cfg.shuffle, log=ctx.log)
    examples, dropped = tokenize_dataset(rows, tokenizer, cfg.max_length)
    write_json(ctx.out_dir / "data_counts.json", {"sources": counts, "examples": len(examples), "dropped": dropped})
    ctx.log.info(f"SFT data: {len(examples)} examples from {counts} ({dropped} dropped: no completion left)")
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.model)
    save_final = None
    if cfg.lora:
        model = apply_lora(model, cfg.lora)
        save_final = lambda m, d: save_lora(m, tokenizer, d, cfg.lora)
    collate = partial(pack_batch if cfg.packing else pad_batch, pad_id=tokenizer.pad_token_id)
    stopping = {}
    if cfg.stop_at:
        held_out = held_out_items(cfg.stop_at, cfg.data, rows)
        target = cfg.stop_at.accuracy
        ctx.log.info(f"SFT until accuracy {target} on {len(held_out)} held-out train-split prompts "
                     f"(checked every {cfg.stop_at.every} steps, at most {cfg.max_steps or 'all'} steps)")
        stopping = {"evaluate": lambda m: {"accuracy": task_accuracy(m, tokenizer, held_out)["accuracy"]},
                    "evaluate_every": cfg.stop_at.every,
                    "stop_when": lambda record: record["eval/accuracy"] >= target}
    summary = train_loop(
        model, sft_objective, examples, collate, cfg, ctx.out_dir, tokenizer=tokenizer,
        save_final=save_final or (lambda m, d: save_model(m, tokenizer, d)), log=ctx.log,
        show_progress=ctx.show_progress, **stopping,
    )
    out = {"train_loss": summary.get("loss"), "steps": summary["steps"], "examples": len(examples),
           "train_seconds": summary["train_seconds"]}
    if cfg.stop_at:
        out["held_out_accuracy"] = summary.get("eval/accuracy")
        out["target_reached"] = float((summary.get("eval/accuracy") or 0.0) >= cfg.stop_at.accuracy)
    return out
