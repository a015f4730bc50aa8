"""Stage `generate`: K samples per prompt from a model, written as samples records.

Input: a JSONL of records with `prompt` (a string, or a list of chat messages); other
fields (`answer`, `task`, ...) are copied through. Prompts are rendered by the one rule of
podium.data.rendering: with the model's chat template when it has one (a string is a user turn),
as plain text when the record says `chat_template: false`. Output `samples.jsonl`, one record
per prompt (docs/DESIGN.md, Records):

    {"prompt": ..., "responses": [K strings], "logps": [K mean token log-probs] (if logps: true),
     ...original fields, "generator": {"model", "backend", "n", "temperature", "top_p", "top_k",
     "max_new_tokens", "seed"}}

`logps[k]` is the mean over the response's tokens (EOS included when emitted) of the
model's own log-prob at temperature 1; see `podium.generation.sampler`.

On several processes (a recipe's `launch:`), prompt i is sampled by rank i % world (by vLLM replica
i % replicas, podium.generation.backend), each rank writes its shard to `.shards/`, and the main
process merges them by prompt index into samples.jsonl: the file is the one a single process
writes, since every sample is seeded by (seed, prompt index, sample index).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pydantic import Field

from podium.data.rendering import chat_prompt
from podium.distributed.world import World, all_gather_json, current_world, device
from podium.errors import DataError
from podium.files import read_jsonl, write_jsonl
from podium.generation.backend import SamplerBackend
from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams
from podium.generation.vllm_sampler import VLLMSampler  # imports vllm itself only when a sampler is built
from podium.models.attention_choice import AttnImplementation
from podium.models.io import load_model, load_tokenizer
from podium.refs import DataRef, ModelRef
from podium.stages import StageContext, stage


class GenerateConfig(SamplerBackend):
    """Settings of the `generate` stage (the backend's: podium.generation.backend)."""

    model: ModelRef
    prompts: DataRef = Field(description="JSONL of records with `prompt` (a string or chat messages)")
    n: int = Field(1, ge=1, description="samples per prompt (K)")
    temperature: float = Field(1.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = off")
    max_new_tokens: int = Field(256, ge=1)
    seed: int = 0
    batch_size: int = Field(32, ge=1, description="sequences decoded together (transformers backend)")
    dtype: str = Field("auto", description="auto = float32 on CPU, bfloat16 on GPU (vLLM: the model's own)")
    device: str = "auto"
    limit: int | None = Field(None, ge=1, description="use only the first `limit` prompts")
    logps: bool = Field(False, description="write the mean token log-prob of each response")
    attn_implementation: AttnImplementation = None

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
        )


def load_sampler(cfg: GenerateConfig, progress: bool = True, world: World | None = None):
    """Build the configured backend's sampler (models load through podium.models.io).

    Inside a launch each rank samples on its own device (its GPU, or the CPU).
    """
    launched = world is not None and world.size > 1
    if cfg.backend == "vllm":
        return VLLMSampler(cfg.model, dtype=cfg.dtype, progress=progress, tensor_parallel_size=cfg.tensor_parallel_size,
                           gpu_memory_utilization=cfg.gpu_memory_utilization, external_launcher=launched, seed=cfg.seed)
    where = cfg.device if cfg.device != "auto" else str(device())
    dtype = cfg.dtype if cfg.dtype != "auto" else ("float32" if where.startswith("cpu") else "bfloat16")
    model = load_model(cfg.model, dtype=dtype, device=where, attn_implementation=cfg.attn_implementation)
    tokenizer = load_tokenizer(cfg.model)
    return TransformersSampler(model, tokenizer, batch_size=cfg.batch_size, progress=progress)


def read_prompts(path: str, limit: int | None = None) -> list[dict]:
    """Prompt records from a JSONL; each needs `prompt` as a string or a list of messages."""
    rows = read_jsonl(path)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{path}: no prompt records")
    for i, row in enumerate(rows, 1):
        prompt = row.get("prompt")
        ok = (
            isinstance(prompt, str)
            and prompt != ""
            or (
                isinstance(prompt, list)
                and prompt
                and all(isinstance(m, dict) and "role" in m for m in prompt)
            )
        )
        if not ok:
            raise DataError(
                f"{row.get('_source', f'{path}: record {i}')}: field 'prompt' must be a non-empty string or a list of "
                f"{{'role', 'content'}} messages, got {prompt!r:.60}"
            )
    return rows


def samples_records(rows: list[dict], completions, cfg: GenerateConfig, backend: str) -> list[dict]:
    """Samples records: the input record plus `responses`, optional `logps`, and `generator` provenance."""
    generator = {
        "model": cfg.model,
        "backend": backend,
        "n": cfg.n,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "max_new_tokens": cfg.max_new_tokens,
        "seed": cfg.seed,
    }
    out = []
    for row, comps in zip(rows, completions):
        record = {"prompt": row["prompt"], "responses": [c.text for c in comps]}
        if cfg.logps:
            record["logps"] = [c.mean_logp for c in comps]
        record.update({k: v for k, v in row.items() if k not in record and k != "generator"})
        record["generator"] = dict(generator)
        out.append(record)
    return out


@stage("generate", GenerateConfig, outputs={"samples": "samples.jsonl"}, distributed="data")
def generate(cfg: GenerateConfig, ctx: StageContext) -> dict[str, float]:
    """Sample `n` responses per prompt and write samples records with provenance."""
    rows = read_prompts(cfg.prompts, cfg.limit)
    tokenizer = load_tokenizer(cfg.model)  # the one rendering rule (podium.data.rendering): templated when it can be
    rows = [{**r, "prompt": chat_prompt(r, tokenizer, ctx.name)} for r in rows]
    world = current_world()
    group = cfg.tensor_parallel_size if cfg.backend == "vllm" and world.size > 1 else 1
    mine = world.shard(len(rows), group)
    sampler = load_sampler(cfg, progress=ctx.show_progress, world=world)
    t0 = time.perf_counter()
    completions = sampler.generate([rows[i]["prompt"] for i in mine], cfg.n, cfg.sampling_params(), cfg.seed,
                                   indices=mine)
    seconds = time.perf_counter() - t0
    if hasattr(sampler, "close"):
        sampler.close()
    records = samples_records([rows[i] for i in mine], completions, cfg, sampler.backend)
    flat = [c for comps in completions for c in comps]
    stats = {"tokens": sum(c.num_tokens for c in flat), "samples": len(flat),
             "stopped": sum(c.finish_reason == "stop" for c in flat), "seconds": seconds}
    out = ctx.out_dir / "samples.jsonl"
    if world.size == 1:
        write_jsonl(out, records)
    else:
        leader = world.rank % group == 0  # one rank per vLLM replica writes its shard
        stats = merge_shards(out, mine, records if leader else None, len(rows), world, group,
                             stats if leader else {"tokens": 0, "samples": 0, "stopped": 0, "seconds": seconds})
    ctx.log.info("generate: %d prompts x %d samples, %d tokens in %.1fs%s", len(rows), cfg.n, stats["tokens"],
                 stats["seconds"], f" on {world.size} processes" if world.size > 1 else "")
    samples = max(1, stats["samples"])
    metrics = {
        "prompts": len(rows),
        "samples": stats["samples"],
        "generated_tokens": stats["tokens"],
        "mean_response_tokens": stats["tokens"] / samples,
        "stopped_at_eos": stats["stopped"] / samples,
        "seconds": stats["seconds"],
        "tokens_per_second": stats["tokens"] / stats["seconds"] if stats["seconds"] > 0 else 0.0,
    }
    if world.size > 1:
        metrics["processes"] = world.size
    return metrics


def merge_shards(out: Path, mine: list[int], records: list[dict] | None, n: int, world: World, group: int,
                 stats: dict) -> dict:
    """Write this rank's shard, let the main process merge every shard into `out` by prompt index.

    Returns the run's totals (tokens, samples, stopped summed; seconds of the slowest rank), on every rank.
    """
    shards = out.parent / ".shards"
    shards.mkdir(parents=True, exist_ok=True)
    if records is not None:
        write_jsonl(shards / f"{out.stem}.{world.rank // group}.jsonl",
                    [{"index": i, "record": r} for i, r in zip(mine, records)])
    world.barrier()
    if world.is_main:
        merged: dict[int, dict] = {}
        for replica in range(world.size // group):
            for row in read_jsonl(shards / f"{out.stem}.{replica}.jsonl"):
                merged[int(row["index"])] = row["record"]
        if sorted(merged) != list(range(n)):
            raise DataError(f"{shards}: the shards hold prompts {len(merged)} of {n}; the merge is incomplete")
        write_jsonl(out, [merged[i] for i in range(n)])
        shutil.rmtree(shards)
    totals = all_gather_json(stats, world)  # also the barrier after which every rank may read `out`
    return {"tokens": sum(t["tokens"] for t in totals), "samples": sum(t["samples"] for t in totals),
            "stopped": sum(t["stopped"] for t in totals), "seconds": max(t["seconds"] for t in totals)}
