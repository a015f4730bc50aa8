"""Supervised fine-tuning on a dataset mixture: loss on completion tokens only.

The loss equals a plain transformers forward with the prompt's labels masked, for padded and packed
batches alike (packed rows carry position resets, from which transformers builds each model's own
masks, sliding windows and per-layer-type attention included). For a mixture-of-experts model the
router load-balancing loss is added as TRL 1.16's SFTTrainer adds it (`podium.training.router_loss`).

`stop_at: {accuracy: 0.3}` trains to a target instead of a fixed step count: every `every` steps
the model answers held-out prompts of the task it learns (greedy), and training stops once its
accuracy reaches the target (at most `max_steps`). The prompts are the task's train-split items
that are not in the SFT data, so the test split stays unseen. A short fixed step count lands on a
different point of a steep learning curve for every seed; a target lands on the same one.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from functools import partial

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from podium.config import invalid
from podium.data.chat import IGNORE, as_messages, tokenize_sft, truncate_sft
from podium.data.collate import pack_batch, pad_batch
from podium.data.mixture import Mixture, as_sources, build_mixture, task_problems
from podium.data.rendering import chat_record
from podium.distributed.world import current_world
from podium.errors import ConfigError, DataError
from podium.evaluation.task_accuracy import task_accuracy
from podium.files import write_json
from podium.models.attention_choice import AttnImplementation
from podium.models.io import load_model, load_tokenizer
from podium.refs import ModelRef
from podium.stages import StageContext, stage
from podium.tasks import get_task
from podium.training.attention_masks import check_causal, padding_free_problem
from podium.training.logps import token_logps
from podium.training.loop import train_loop
from podium.training.lora import LoraSettings, apply_lora, save_lora
from podium.training.router_loss import load_balancing_loss, recording_router_logits, router_aux_coef, router_top_k
from podium.training.segment_attention import attending_by_segments, segments_applicable
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

    @model_validator(mode="after")
    def _known_task(self):
        if self.task is not None or self.difficulty:  # found by --dry-run, not after the data is built
            for loc, message in task_problems(self.task, self.difficulty or {}):
                raise invalid(loc, message, self.task if loc == ("task",) else (self.difficulty or {}).get(loc[-1]))
        return self


class SFTConfig(TrainSettings):
    model: ModelRef = Field(description="model folder, Hub id, or '@stage'")
    data: Mixture = Field(description="a dataset or a mixture of sources with per-source counts")
    max_length: int = Field(512, ge=8)
    packing: bool = Field(False, description="pack each micro-batch into one row without padding")
    lora: LoraSettings | None = None
    learning_rate: float = 1e-4
    attn_implementation: AttnImplementation = None
    router_aux_loss_coef: float | None = Field(
        None, ge=0, description="MoE router loss weight; unset: the model config's (as TRL), 0: off")
    stop_at: StopAt | None = None


def sft_objective(model, batch: dict, router_aux_loss_coef: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Summed token NLL over completion tokens (plus `count * coef * aux` for an MoE router loss).

    Logits are computed only at the positions that predict a completion token (`pred_mask` [R, T] as
    transformers' boolean `logits_to_keep`, giving [N, V]; `targets` [N]) and log-softmaxed in fp32 chunks
    (`podium.training.logps.token_logps`), so neither the LM head on prompt and padding positions nor a
    [R, T, V] logits tensor is ever computed. A packed batch has `position_ids` restarting per example.
    """
    # No cache: transformers separates packed sequences by their position resets only without one.
    # No padding mask: padded rows are right-padded, so under causal attention no real token sees a pad and
    # the mask changes nothing that is kept; without it attention takes sdpa's causal kernel, not the masked one.
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": None, "use_cache": False,
              "logits_to_keep": batch["pred_mask"]}
    if batch.get("position_ids") is not None:
        kwargs["position_ids"] = batch["position_ids"]
    packed = batch.get("position_ids") is not None
    by_segments = attending_by_segments(model, batch["position_ids"]) if packed and segments_applicable(model) \
        else nullcontext()
    with recording_router_logits(model) if router_aux_loss_coef else nullcontext() as routed, by_segments:
        logits = model(**kwargs).logits
    if logits.dim() == 3:  # a model that ignores boolean logits_to_keep returns [R, T, V]
        logits = logits[batch["pred_mask"].to(logits.device)]
    loss_sum = -token_logps(logits, batch["targets"].to(logits.device)).sum()
    if not router_aux_loss_coef:
        return loss_sum, {}
    # Every real token counts once, as in transformers' own router loss with a 2D padding mask.
    aux = load_balancing_loss(routed, router_top_k(model), batch["token_mask"])
    return loss_sum + batch["count"] * router_aux_loss_coef * aux, {"aux_loss": aux.detach().reshape(1)}


def tokenize_dataset(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int, int]:
    """Tokenised examples plus how many were dropped (no completion left) and truncated (completion cut)."""
    examples, dropped, truncated = [], 0, 0
    for r in rows:
        ex, lost = truncate_sft(tokenize_sft(r, tokenizer), max_length)
        if any(label != IGNORE for label in ex["labels"][1:]):
            examples.append(ex)
            truncated += lost  # the completion lost its tail (and its EOS)
        else:
            dropped += 1  # prompt filled max_length: nothing left to learn from
    if not examples:
        raise DataError(f"no SFT example has completion tokens within max_length={max_length}")
    return examples, dropped, truncated


def held_out_items(stop: StopAt, data, rows: list[dict]) -> list[dict]:
    """`stop.count` train-split items of the target task whose prompts are not among the SFT rows."""
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


@stage("sft", SFTConfig, outputs={"model": "."}, distributed="train")
def sft(cfg: SFTConfig, ctx: StageContext) -> dict:
    """Supervised fine-tuning (completion-only loss) on a dataset mixture."""
    tokenizer = load_tokenizer(cfg.model)
    skipped: dict = {}
    rows, counts = build_mixture(cfg.data, seed=cfg.seed, shuffle=cfg.shuffle, log=ctx.log, use="sft", skipped=skipped)
    rows = [chat_record(r, tokenizer, ctx.name) for r in rows]  # the one rendering rule (podium.data.rendering)
    examples, dropped, truncated = tokenize_dataset(rows, tokenizer, cfg.max_length)
    # Once, by the main process, when the stage runs on several (two writers would share a temporary name).
    current_world().on_main(write_json, ctx.out_dir / "data_counts.json",
                            {"sources": counts, "skipped": skipped, "examples": len(examples), "dropped": dropped,
                             "truncated": truncated})
    ctx.log.info(f"SFT data: {len(examples)} examples from {counts} ({dropped} dropped: no completion left)")
    if truncated:
        ctx.log.warning(f"SFT data: {truncated} of {len(examples)} completions truncated to max_length="
                        f"{cfg.max_length} (their tail and EOS are not learned); raise max_length to keep them")
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.model, attn_implementation=cfg.attn_implementation, rank_local=True)
    router_coef = router_aux_coef(model, cfg.router_aux_loss_coef)
    check_causal(model)
    packing = cfg.packing
    if packing and (why := padding_free_problem(model)):
        ctx.log.info(f"packing off for this model: {why}; using padded rows")
        packing = False
    save_final = None
    if cfg.lora:
        model = apply_lora(model, cfg.lora)
        save_final = lambda m, d, **kw: save_lora(m, tokenizer, d, cfg.lora, base=cfg.model, **kw)
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    if packing:
        # Attended one example at a time (training/segment_attention.py), a row's length costs no attention:
        # the whole micro-batch goes in one row, without padding. Otherwise rows as long as the longest example.
        by_segments = segments_applicable(model) and not cfg.gradient_checkpointing
        if cfg.gradient_checkpointing and segments_applicable(model):
            ctx.log.info("per-example attention off under gradient_checkpointing (a recomputed layer runs outside "
                         "its routing); packed rows attend through transformers' block-diagonal mask")
        one_row = sys.maxsize if by_segments else None
        collate = partial(pack_batch, pad_id=tokenizer.pad_token_id, capacity=one_row)
    objective = partial(sft_objective, router_aux_loss_coef=router_coef)
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
        model, objective, examples, collate, cfg, ctx.out_dir, tokenizer=tokenizer,
        save_final=save_final, log=ctx.log,
        show_progress=ctx.show_progress, **stopping,
    )
    out = {"train_loss": summary.get("loss"), "steps": summary["steps"], "examples": len(examples),
           "examples/truncated": truncated, "train_seconds": summary["train_seconds"]}
    out.update({k: summary[k] for k in summary if k in ("tokens_per_second", "flops_per_second", "mfu")
                or k.startswith("memory/")})
    if cfg.stop_at:
        out["held_out_accuracy"] = summary.get("eval/accuracy")
        out["target_reached"] = float((summary.get("eval/accuracy") or 0.0) >= cfg.stop_at.accuracy)
    return out
