"""Stage `generate`: K samples per prompt from a model, written as samples records.

Input: a JSONL of records with `prompt` (a string, or a list of chat messages); other
fields (`answer`, `task`, ...) are copied through. Output `samples.jsonl`, one record
per prompt (docs: ../shared/DESIGN.md, Records):

    {"prompt": ..., "responses": [K strings], "logps": [K mean token log-probs] (if logps: true),
     ...original fields, "generator": {"model", "backend", "n", "temperature", "top_p", "top_k",
     "max_new_tokens", "seed"}}

`logps[k]` is the mean over the response's tokens (EOS included when emitted) of the
model's own log-prob at temperature 1; see `podium.generation.sampler`.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from pydantic import Field

from podium.data.records import read_jsonl, write_jsonl
from podium.errors import DataError
from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams
from podium.generation.vllm_sampler import VLLMSampler  # imports vllm itself only when a sampler is built
from podium.models.io import AttnImplementation, load_model, load_tokenizer
from podium.refs import DataRef, ModelRef
from podium.stages import StageConfig, StageContext, stage


class GenerateConfig(StageConfig):
    """Settings of the `generate` stage."""

    model: ModelRef
    prompts: DataRef = Field(description="JSONL of records with `prompt` (a string or chat messages)")
    n: int = Field(1, ge=1, description="samples per prompt (K)")
    temperature: float = Field(1.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = off")
    max_new_tokens: int = Field(256, ge=1)
    seed: int = 0
    backend: Literal["transformers", "vllm"] = "transformers"
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


def load_sampler(cfg: GenerateConfig, progress: bool = True):
    """Build the configured backend's sampler (models load through podium.models.io)."""
    if cfg.backend == "vllm":
        return VLLMSampler(cfg.model, dtype=cfg.dtype, progress=progress)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("float32" if device == "cpu" else "bfloat16")
    model = load_model(cfg.model, dtype=dtype, device=device, attn_implementation=cfg.attn_implementation)
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


@stage("generate", GenerateConfig, outputs={"samples": "samples.jsonl"})
def generate(cfg: GenerateConfig, ctx: StageContext) -> dict[str, float]:
    """Sample `n` responses per prompt and write samples records with provenance."""
    rows = read_prompts(cfg.prompts, cfg.limit)
    sampler = load_sampler(cfg, progress=ctx.show_progress)
    t0 = time.perf_counter()
    completions = sampler.generate([r["prompt"] for r in rows], cfg.n, cfg.sampling_params(), cfg.seed)
    seconds = time.perf_counter() - t0
    write_jsonl(ctx.out_dir / "samples.jsonl", samples_records(rows, completions, cfg, sampler.backend))
    flat = [c for comps in completions for c in comps]
    tokens = sum(c.num_tokens for c in flat)
    ctx.log.info("generate: %d prompts x %d samples, %d tokens in %.1fs", len(rows), cfg.n, tokens, seconds)
    return {
        "prompts": len(rows),
        "samples": len(flat),
        "generated_tokens": tokens,
        "mean_response_tokens": tokens / len(flat),
        "stopped_at_eos": sum(c.finish_reason == "stop" for c in flat) / len(flat),
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
    }
