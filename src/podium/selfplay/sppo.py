"""Stage `selfplay`: SPPO / GPO iterations (Wu et al., 2024, "Self-Play Preference Optimization").

Iteration t = 1..T on its own disjoint part of the prompts:
  sample K responses per prompt from pi_t -> judge them (K x K preference matrix) ->
  win probabilities (row means, self = 1/2) -> pair argmax vs argmin with both
  probabilities -> train with objective sppo (soft | single | hard) or gpo, with pi_t as
  the reference -> pi_{t+1}.
After each iteration: the win rate of pi_{t+1} against the baseline (default pi_1) under
the same judge on held-out prompts, and task accuracy when the prompts have gold answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from podium.data.chat import as_messages
from podium.data.mixture import build_mixture
from podium.data.records import read_jsonl, write_json, write_jsonl
from podium.errors import DataError
from podium.judging.build import JudgeSpec, build_judge
from podium.selfplay.targets import sppo_pair
from podium.stages import StageConfig, StageContext, run_stage, stage
from podium.tasks import get_task

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class SelfPlayConfig(StageConfig):
    model: str = Field(description="pi_1: the first policy (and reference)")
    prompts: str | list | dict | None = Field(
        None, description="a prompt dataset or mixture (task items keep 'answer' and 'task'); "
        "`columns: {prompt: instruction}` maps other layouts")
    task: str | None = Field(None, description="or draw prompts from a built-in task")
    count: int = Field(600, ge=1, description="prompts in all, split into one part per iteration")
    difficulty: dict = Field(default_factory=dict)
    iterations: int = Field(3, ge=1)
    num_samples: int = Field(5, ge=2, description="K responses per prompt")
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    objective: Literal["sppo", "sppo_single", "sppo_hard", "gpo"] = "sppo"
    beta: float = Field(0.001, gt=0, description="eta = 1/beta (the SPPO cards use eta = 1000)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1, description="generation batch size")
    train: dict[str, Any] = Field(default_factory=dict, description="settings of each iteration's `train` stage")
    baseline: str | None = Field(None, description="model the win rate is measured against (default: pi_1)")
    eval_judge: JudgeSpec | None = Field(None, description="judge of that win rate (default: `judge`), e.g. the "
                                         "task's verifier or true preference when training uses a learned judge")
    eval_count: int = Field(200, ge=1, description="held-out prompts for win rate and accuracy")
    seed: int = 0


def load_prompts(cfg: SelfPlayConfig, split: str, n: int, seed: int) -> list[dict]:
    """Training prompts or held-out prompts: from the configured dataset, or a built-in task's splits.

    Prompts are user turns (message lists), so the sampler applies the chat template.
    """
    if cfg.prompts is None:
        items = get_task(cfg.task).items(n, split=split, seed=seed, **cfg.difficulty)
        return [{**it, "prompt": as_messages(it["prompt"])} for it in items]
    rows, _ = build_mixture(cfg.prompts, seed=seed)
    rows = [{**r, "prompt": as_messages(r["prompt"])} for r in rows]
    # The last eval_count (shuffled) prompts are held out for the win rate; training draws from the rest.
    held_out, train = rows[-cfg.eval_count:], rows[: -cfg.eval_count]
    if not train:
        raise DataError(f"{len(rows)} prompts leave none for training after holding out eval_count={cfg.eval_count}")
    return held_out if split == "test" else train[:n]


def generate(model: str, prompts_file: Path, out: Path, cfg: SelfPlayConfig, n: int, temperature: float, seed: int):
    run_stage("generate", {"model": model, "prompts": str(prompts_file), "n": n,
                           "temperature": temperature, "top_p": cfg.top_p if temperature > 0 else 1.0,
                           "max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "seed": seed}, out)
    return read_jsonl(out / "samples.jsonl")


def build_pairs(samples: list[dict], judge, with_scores: bool) -> tuple[list[dict], dict]:
    pairs, counts = [], {"prompts": len(samples), "pairs": 0, "dropped_invalid": 0, "dropped_ties": 0}
    for s in samples:
        judged = judge.judge(s["prompt"], s["responses"], answer=s.get("answer"), task=s.get("task"))
        if not judged.valid:
            counts["dropped_invalid"] += 1
            continue
        pair = sppo_pair(judged.matrix, judged.scores if with_scores else None)
        if pair is None:
            counts["dropped_ties"] += 1
            continue
        prompt = as_messages(s["prompt"])
        w, l = pair.pop("chosen_index"), pair.pop("rejected_index")
        pairs.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": s["responses"][w]}],
                      "rejected": [{"role": "assistant", "content": s["responses"][l]}], **pair,
                      **{k: s[k] for k in ("answer", "task") if k in s}})
    counts["pairs"] = len(pairs)
    return pairs, counts


def win_rate(new: list[dict], base: list[dict], judge) -> tuple[float, int]:
    """Mean P(new beats base) over held-out prompts both models answered (greedy)."""
    total, n = 0.0, 0
    for a, b in zip(new, base):
        judged = judge.judge(a["prompt"], [a["responses"][0], b["responses"][0]], answer=a.get("answer"),
                             task=a.get("task"))
        if judged.valid:
            total += float(judged.matrix[0, 1])
            n += 1
    return (total / n if n else float("nan")), n


def accuracy(samples: list[dict]) -> float | None:
    checked = [get_task(s["task"]).check(s["responses"][0], s["answer"]) for s in samples if "answer" in s]
    return sum(checked) / len(checked) if checked else None


def copy_model(src: Path, dst: Path) -> None:
    for name in MODEL_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    for shard in src.glob("model-*.safetensors"):
        shutil.copy2(shard, dst / shard.name)


@stage("selfplay", SelfPlayConfig, outputs={"model": "."})
def selfplay(cfg: SelfPlayConfig, ctx: StageContext) -> dict:
    """Self-Play Preference Optimization: T iterations of sample, judge, pair, train."""
    out = ctx.out_dir
    judge = build_judge(cfg.judge)
    eval_judge = build_judge(cfg.eval_judge) if cfg.eval_judge else judge
    prompts = load_prompts(cfg, "train", cfg.count, cfg.seed)
    parts = [prompts[t :: cfg.iterations] for t in range(cfg.iterations)]
    if any(not p for p in parts):
        raise DataError(f"{len(prompts)} prompts cannot be split into {cfg.iterations} non-empty parts")
    held_out = write_jsonl(out / "eval_prompts.jsonl", load_prompts(cfg, "test", cfg.eval_count, cfg.seed))
    baseline = cfg.baseline or cfg.model
    base_answers = generate(baseline, held_out, out / "baseline_eval", cfg, 1, 0.0, cfg.seed)

    metrics: dict[str, float] = {}
    policy = cfg.model
    for t in range(1, cfg.iterations + 1):
        it = out / f"iter{t}"
        done = it / "done.json"
        if done.exists():  # resume: this iteration finished before an interruption
            metrics.update(json.loads(done.read_text()))
            policy = str(it / "model")
            continue
        it.mkdir(parents=True, exist_ok=True)
        part_file = write_jsonl(it / "prompts.jsonl", parts[t - 1])
        samples = generate(policy, part_file, it / "generate", cfg, cfg.num_samples, cfg.temperature, cfg.seed + t)
        pairs, counts = build_pairs(samples, judge, with_scores=cfg.objective == "gpo")
        if not pairs:
            raise DataError(f"iteration {t}: the judge preferred no response over another on any prompt ({counts})")
        pairs_file = write_jsonl(it / "pairs.jsonl", pairs)
        train = {"batch_size": 8, **cfg.train}
        if len(pairs) < train["batch_size"] * train.get("gradient_accumulation_steps", 1):
            ctx.log.warning(f"iteration {t}: only {len(pairs)} pairs; training on one batch of all of them")
            train.update(batch_size=len(pairs), gradient_accumulation_steps=1)
        run_stage("train", {"objective": cfg.objective, "model": policy, "reference": policy,
                            "data": str(pairs_file), "beta": cfg.beta, "seed": cfg.seed + t, **train},
                  it / "model")
        policy = str(it / "model")
        answers = generate(policy, held_out, it / "eval", cfg, 1, 0.0, cfg.seed)
        wr, n = win_rate(answers, base_answers, eval_judge)
        result = {f"iter{t}/win_rate": wr, f"iter{t}/pairs": counts["pairs"],
                  f"iter{t}/dropped_invalid": counts["dropped_invalid"], f"iter{t}/dropped_ties": counts["dropped_ties"]}
        acc = accuracy(answers)
        if acc is not None:
            result[f"iter{t}/accuracy"] = acc
        write_json(done, result)
        metrics.update(result)
        ctx.log.info(f"self-play iteration {t}: win rate vs baseline {wr:.3f} on {n} prompts"
                     + (f", accuracy {acc:.3f}" if acc is not None else ""))
    copy_model(Path(policy), out)
    base_acc = accuracy(base_answers)
    if base_acc is not None:
        metrics["baseline_accuracy"] = base_acc
    metrics["win_rate"] = metrics[f"iter{cfg.iterations}/win_rate"]
    if f"iter{cfg.iterations}/accuracy" in metrics:
        metrics["accuracy"] = metrics[f"iter{cfg.iterations}/accuracy"]
    return metrics
