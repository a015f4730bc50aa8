"""Self-Generated Dataset (SGD) pairs, as behind Rhea-72b.

For task prompts with gold answers, the model's own generations are checked; a
generation the checker rejects becomes `rejected` and the gold answer becomes `chosen`:
a dataset's worked solution (`reference`, e.g. GSM8K's `answer` read with `gold:`) as
written, or a built-in task's answer in the model's answer format. Optionally only generations whose mean token
log-prob is below the mean over all generations are kept (`below_mean_logp`): the
low-likelihood mistakes the model is least sure of.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import Field

from podium.data.prompt_source import PromptSource
from podium.data.rendering import PLAIN_KEY, is_plain, response_pair
from podium.distributed.world import current_world
from podium.errors import DataError
from podium.files import read_jsonl, write_json, write_jsonl
from podium.generation.backend import SamplerBackend
from podium.models.attention_choice import AttnImplementation
from podium.refs import ModelRef
from podium.stages import StageContext, run_stage, stage
from podium.tasks import get_task


def build_sgd_pairs(samples: list[dict], *, pairs_per_prompt: int = 1, dedupe: bool = True,
                    select: str = "all", seed: int = 0) -> tuple[list[dict], dict]:
    """Samples records -> preference pairs (gold chosen, failed generation rejected) and counts.

    Each samples record holds `prompt`, `answer`, `task`, `responses` and, for
    `select="below_mean_logp"`, `logps` (mean token log-prob of each response).
    """
    rng = random.Random(seed)
    counts = {"prompts": len(samples), "samples": 0, "correct": 0, "pairs": 0, "dropped_duplicate": 0,
              "dropped_high_logp": 0, "prompts_all_correct": 0}
    if select == "below_mean_logp":
        all_logps = [lp for s in samples for lp in s.get("logps") or []]
        if not all_logps:
            raise DataError("select: below_mean_logp needs samples with 'logps' (mean token log-prob per response)")
        threshold = sum(all_logps) / len(all_logps)
    pairs = []
    for s in samples:
        task = get_task(s["task"])
        responses = s["responses"]
        counts["samples"] += len(responses)
        wrong = []
        for i, r in enumerate(responses):
            if task.check(r, s["answer"]):
                counts["correct"] += 1
                continue
            if select == "below_mean_logp" and s["logps"][i] >= threshold:
                counts["dropped_high_logp"] += 1
                continue
            wrong.append(r)
        if dedupe:
            unique = list(dict.fromkeys(wrong))
            counts["dropped_duplicate"] += len(wrong) - len(unique)
            wrong = unique
        if not wrong and all(task.check(r, s["answer"]) for r in responses):
            counts["prompts_all_correct"] += 1
        item = {"prompt": s["prompt"] if isinstance(s["prompt"], str) else s["prompt"][-1]["content"], "answer": s["answer"]}
        chosen = s.get("reference") or task.format_answer(item)  # a dataset's worked solution, as its authors wrote it
        plain = {PLAIN_KEY: False} if is_plain(s) else {}
        for r in rng.sample(wrong, min(pairs_per_prompt, len(wrong))):
            pairs.append({**response_pair(s["prompt"], chosen, r), "task": s["task"], "answer": s["answer"],
                          "source": "sgd", **plain})
    counts["pairs"] = len(pairs)
    return pairs, counts


class SGDConfig(PromptSource, SamplerBackend):
    """Prompts with gold answers (`prompts` of task items {prompt, answer, task}, or the task's train split).

    Sampling runs on the configured backend (podium.generation.backend); on several processes each
    samples its share of the prompts and the pairs are built once from the merged samples.
    """

    model: ModelRef
    count: int = Field(500, ge=1, description="how many task items")
    num_samples: int = Field(4, ge=1, description="K generations per prompt")
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1)
    pairs_per_prompt: int = Field(1, ge=1)
    dedupe: bool = True
    select: Literal["all", "below_mean_logp"] = "all"
    attn_implementation: AttnImplementation = None


@stage("sgd", SGDConfig, outputs={"pairs": "pairs.jsonl", "samples": "generate/samples.jsonl"}, distributed="data")
def sgd(cfg: SGDConfig, ctx: StageContext) -> dict:
    """Rhea's Self-Generated Dataset: gold answer chosen, the model's failed generation rejected."""
    items = cfg.prompt_rows() if cfg.prompts else cfg.task_items("train")
    missing = [i for i, it in enumerate(items) if "answer" not in it or "task" not in it]
    if missing:
        where = items[missing[0]].get("_source", f"item {missing[0]}")
        raise DataError(f"{where}: SGD needs task items with 'answer' and 'task' fields")
    # The generate stage renders the prompts (podium.data.rendering); the file holds what the pairs need.
    world = current_world()
    prompts_file = world.on_main(write_jsonl, ctx.out_dir / "prompts.jsonl", items)
    run_stage("generate", {
        "model": cfg.model, "prompts": str(prompts_file), "n": cfg.num_samples, "logps": True,
        "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
        "batch_size": cfg.batch_size, "seed": cfg.seed, "attn_implementation": cfg.attn_implementation,
        **cfg.backend_settings(),
    }, ctx.out_dir / "generate")
    samples = read_jsonl(Path(ctx.out_dir / "generate" / "samples.jsonl"))
    pairs, counts = build_sgd_pairs(samples, pairs_per_prompt=cfg.pairs_per_prompt, dedupe=cfg.dedupe,
                                    select=cfg.select, seed=cfg.seed)
    if not pairs:
        raise DataError(f"SGD built no pairs: every one of {counts['samples']} generations was correct or dropped")
    world.on_main(write_jsonl, ctx.out_dir / "pairs.jsonl", pairs)
    world.on_main(write_json, ctx.out_dir / "counts.json", counts)
    counts["sample_accuracy"] = counts["correct"] / max(1, counts["samples"])
    return counts
