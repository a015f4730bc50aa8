"""Stage `selfplay`: SPPO / GPO iterations (Wu et al., 2024, "Self-Play Preference Optimization").

Iteration t = 1..T on its own disjoint part of the prompts:
  sample K responses per prompt from pi_t -> judge them (K x K preference matrix) ->
  win probabilities (row means, self = 1/2) -> pair argmax vs argmin with both
  probabilities -> train with objective sppo (soft | single | hard) or gpo, with pi_t as
  the reference -> pi_{t+1}.
After each iteration, on the same held-out prompts with the same sampling seed for every policy:
the win rate of pi_{t+1} against the baseline (default pi_1) and against pi_t under the evaluation
judge, the paired per-prompt gain over pi_t's win rate, each with a 95 % bootstrap interval over
the prompts (podium.selfplay.held_out), and task accuracy when the prompts have gold answers.

On several processes (a recipe's `launch:`) every step runs on every rank: sampling and judging
split the prompts by index (prompt i on rank i % world) and merge the results by index, training
is the loop's data-parallel run; files are written once, by the main process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, field_validator, model_validator

from podium.config import relocated
from podium.data.prompt_source import PromptSource
from podium.data.rendering import PLAIN_KEY, response_pair
from podium.distributed.world import World, current_world, gather_by_index
from podium.errors import DataError
from podium.files import read_jsonl, write_json, write_jsonl
from podium.generation.backend import SamplerBackend
from podium.judging.base import Judgement
from podium.judging.build import JudgeSpec, build_judge
from podium.losses import LOSS_SPECS, SELF_PLAY_OBJECTIVES, SETTINGS, objective_names
from podium.models.attention_choice import AttnImplementation
from podium.models.publish import MODEL_FILES
from podium.refs import ModelRef
from podium.selfplay.held_out import iteration_metrics, standard_error_note
from podium.selfplay.targets import sppo_pair
from podium.stages import StageContext, run_stage, stage
from podium.tasks import get_task
from podium.training.train import TrainConfig


class SelfPlayConfig(PromptSource, SamplerBackend):
    """Prompts (`prompts`, or `count` task items) are split into one disjoint part per iteration."""

    model: ModelRef = Field(description="pi_1: the first policy (and reference)")
    count: int = Field(600, ge=1, description="prompts in all, split into one part per iteration")
    iterations: int = Field(3, ge=1)
    num_samples: int = Field(5, ge=2, description="K responses per prompt")
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    objective: str = Field("sppo", description="a self-play objective of podium.losses.LOSS_SPECS: "
                           + ", ".join(SELF_PLAY_OBJECTIVES))
    beta: float = Field(0.001, gt=SETTINGS["beta"].gt, description="eta = 1/beta (the SPPO cards use eta = 1000)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1, description="generation batch size")
    train: dict[str, Any] = Field(default_factory=dict, description="settings of each iteration's `train` stage; "
                                  "its `objective` may be any objective on pairs (docs/OBJECTIVES.md)")
    baseline: ModelRef | None = Field(None, description="model the win rate is measured against (default: pi_1)")
    eval_judge: JudgeSpec | None = Field(None, description="judge of that win rate (default: `judge`), e.g. the "
                                         "task's verifier or true preference when training uses a learned judge")
    eval_count: int = Field(200, ge=1, description="held-out prompts for win rate and accuracy")
    eval_temperature: float = Field(0.0, ge=0, description="held-out answers: 0 greedy; above 0 sampled (with "
                                    "top_p), with the same seed for every iteration's policy, as the SPPO cards' "
                                    "AlpacaEval configs sample (0.7, top_p 0.9)")
    eval_samples: int = Field(1, ge=1, description="answers per held-out prompt (sampled evaluation): answer j of each "
                              "policy is judged against answer j of the other, and a prompt's win probability is "
                              "their mean")
    attn_implementation: AttnImplementation = None

    @field_validator("objective")
    @classmethod
    def _self_play_objective(cls, value: str) -> str:
        if value not in SELF_PLAY_OBJECTIVES:
            raise ValueError(f"{value!r} is not a self-play objective; use one of {', '.join(SELF_PLAY_OBJECTIVES)}")
        return value

    def plan_notes(self) -> list[str]:
        return [standard_error_note(self.eval_count)]

    @model_validator(mode="after")
    def _sampled_evaluation(self):
        if self.eval_samples > 1 and self.eval_temperature == 0:
            raise ValueError(f"eval_samples {self.eval_samples} needs eval_temperature > 0 (greedy answers are all alike)")
        return self

    @model_validator(mode="after")
    def _check_train(self):
        """Each iteration's `train` settings are checked now, not after the first iteration's sampling."""
        try:
            TrainConfig.model_validate(iteration_train_config(self, "pi_t", "pairs.jsonl", 1))
        except ValidationError as e:
            raise relocated([e], [("train",)]) from None
        return self


def iteration_objective(cfg: SelfPlayConfig) -> tuple[str, ...]:
    """The objective(s) each iteration trains with: `train:`'s `objective` when it names one, else `objective`."""
    objective = cfg.train.get("objective", cfg.objective)
    return objective_names(objective) if isinstance(objective, (str, list)) else (cfg.objective,)


def iteration_train_config(cfg: SelfPlayConfig, policy: str, pairs_file: str, t: int) -> dict:
    """The `train` stage config of iteration t: pi_t is the policy and the reference; `train:` settings win.

    Another objective in `train:` (SimPO, KTO, ...) gets pi_t as its reference only if it uses one, and starts
    from its own beta: the stage's `beta` (eta = 1/beta) belongs to the self-play objectives.
    """
    specs = [LOSS_SPECS[n] for n in iteration_objective(cfg) if n in LOSS_SPECS]
    config = {"objective": cfg.objective, "model": policy, "data": pairs_file, "seed": cfg.seed + t, "batch_size": 8,
              "attn_implementation": cfg.attn_implementation}
    if not (specs and all(s.reference_free for s in specs)):
        config["reference"] = policy
    if not specs or all(s.self_play for s in specs):
        config["beta"] = cfg.beta
    return {**config, **cfg.train}


def load_prompts(cfg: SelfPlayConfig, split: str, n: int, seed: int) -> list[dict]:
    """Training prompts or held-out prompts: from the configured dataset, or a built-in task's splits.

    The generate stage renders them (podium.data.rendering): user turns under the policy's chat template.
    """
    if cfg.prompts is None:
        return cfg.task_items(split, n, seed=seed)
    rows = cfg.prompt_rows(shuffle=True, seed=seed)
    # The last eval_count (shuffled) prompts are held out for the win rate; training draws from the rest.
    held_out, train = rows[-cfg.eval_count:], rows[: -cfg.eval_count]
    if not train:
        raise DataError(f"{len(rows)} prompts leave none for training after holding out eval_count={cfg.eval_count}")
    return held_out if split == "test" else train[:n]


def sample_responses(model: str, prompts_file: Path, out: Path, cfg: SelfPlayConfig, n: int, temperature: float, seed: int):
    run_stage("generate", {"model": model, "prompts": str(prompts_file), "n": n,
                           "temperature": temperature, "top_p": cfg.top_p if temperature > 0 else 1.0,
                           "max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "seed": seed,
                           "attn_implementation": cfg.attn_implementation, **cfg.backend_settings()}, out)
    return read_jsonl(out / "samples.jsonl")


def judgement_json(j: Judgement) -> dict:
    """A judgement as JSON (floats round-trip exactly), to cross process boundaries without pickle."""
    def tensor(t):
        return None if t is None else {"dtype": str(t.dtype).replace("torch.", ""), "values": t.tolist()}

    return {"matrix": tensor(j.matrix), "valid": j.valid, "scores": tensor(j.scores), "reason": j.reason,
            "invalid": list(j.invalid)}


def judgement_from_json(d: dict) -> Judgement:
    def tensor(t):
        return None if t is None else torch.tensor(t["values"], dtype=getattr(torch, t["dtype"]))

    return Judgement(matrix=tensor(d["matrix"]), valid=d["valid"], scores=tensor(d["scores"]), reason=d["reason"],
                     invalid=d["invalid"])


def judge_all(judge, items: list[tuple], world: World) -> list[Judgement]:
    """The judgement of every (prompt, responses, answer, task); item i is judged by rank i % world. A judge with
    `judge_many` gets all its items at once (PairRM batches the pairs of many prompts)."""
    def judged(batch):
        many = getattr(judge, "judge_many", None)
        return many(batch) if many is not None else [judge.judge(p, r, answer=a, task=t) for p, r, a, t in batch]

    if world.size == 1:
        return judged(items)
    shard = list(world.shard(len(items)))
    mine = {i: judgement_json(j) for i, j in zip(shard, judged([items[i] for i in shard]))}
    return [judgement_from_json(d) for d in gather_by_index(mine, len(items), world)]


def build_pairs(samples: list[dict], judge, with_scores: bool, world: World = World()) -> tuple[list[dict], dict]:
    pairs, counts = [], {"prompts": len(samples), "pairs": 0, "dropped_invalid": 0, "dropped_ties": 0}
    judgements = judge_all(judge, [(s["prompt"], s["responses"], s.get("answer"), s.get("task")) for s in samples],
                           world)
    for s, judged in zip(samples, judgements):
        if not judged.valid:
            counts["dropped_invalid"] += 1
            continue
        pair = sppo_pair(judged.matrix, judged.scores, gpo=with_scores)
        if pair is None:
            counts["dropped_ties"] += 1
            continue
        w, l = pair.pop("chosen_index"), pair.pop("rejected_index")
        pairs.append({**response_pair(s["prompt"], s["responses"][w], s["responses"][l]), **pair,
                      **{k: s[k] for k in ("answer", "task", PLAIN_KEY) if k in s}})
    counts["pairs"] = len(pairs)
    return pairs, counts


def judged_probabilities(new: list[dict], base: list[dict], judge, world: World = World()) -> list[float | None]:
    """Per held-out prompt, P(new's answer ≻ base's answer) under `judge`, averaged over the answers: answer j of
    `new` against answer j of `base` (drawn with the same seed). None where the judge can compare no pair."""
    index, items = [], []
    for i, (a, b) in enumerate(zip(new, base, strict=True)):
        for x, y in zip(a["responses"], b["responses"], strict=True):
            index.append(i)
            items.append((a["prompt"], [x, y], a.get("answer"), a.get("task")))
    sums, counts = [0.0] * len(new), [0] * len(new)
    for i, j in zip(index, judge_all(judge, items, world)):
        if j.valid:
            sums[i] += float(j.matrix[0, 1])
            counts[i] += 1
    return [s / c if c else None for s, c in zip(sums, counts)]


def accuracy(samples: list[dict]) -> float | None:
    """Share of correct answers over every held-out answer of prompts with gold answers (None without any)."""
    checked = [get_task(s["task"]).check(r, s["answer"]) for s in samples if "answer" in s for r in s["responses"]]
    return sum(checked) / len(checked) if checked else None


def sample_diagnostics(samples: list[dict]) -> dict[str, float]:
    """What an iteration's K samples per prompt offer a verifier (prompts with gold answers only):
    `sample_accuracy` (all samples), `solved_share` (prompts with a correct sample: pass@K) and
    `mixed_share` (prompts with both a correct and a wrong sample: the only ones a verifier ranks)."""
    checked = [[get_task(s["task"]).check(r, s["answer"]) for r in s["responses"]] for s in samples if "answer" in s]
    if not checked:
        return {}
    n = len(checked)
    return {"sample_accuracy": sum(map(sum, checked)) / sum(map(len, checked)),
            "solved_share": sum(any(c) for c in checked) / n,
            "mixed_share": sum(any(c) and not all(c) for c in checked) / n}


def write_judged(path: Path, vs_baseline: list, vs_previous: list | None) -> Path:
    """Per held-out prompt (in eval_prompts.jsonl's order): P(≻ baseline), P(≻ previous policy)."""
    return write_jsonl(path, [{"index": i, "vs_baseline": a, "vs_previous": None if vs_previous is None else vs_previous[i]}
                              for i, a in enumerate(vs_baseline)])


def read_judged(path: Path) -> list[float | None]:
    """The per-prompt P(≻ baseline) that `write_judged` wrote."""
    return [r["vs_baseline"] for r in read_jsonl(path)]


def copy_model(src: Path, dst: Path) -> None:
    """The files of the model folder `src` (weights, config, tokenizer: `MODEL_FILES`) into `dst`."""
    for pattern in MODEL_FILES:
        for f in src.glob(pattern):
            if f.is_file():
                shutil.copy2(f, dst / f.name)


def iteration_line(m: dict, t: int) -> str:
    """The log line of iteration t: its win rates and paired gain, with their 95 % intervals."""
    def shown(name: str, label: str) -> str:
        k = f"iter{t}/{name}"
        if k not in m:
            return ""
        bounds = f" [{m[k + '_low']:.3f}, {m[k + '_high']:.3f}]" if k + "_low" in m else ""
        return f"{label} {m[k]:+.4f}{bounds}" if name == "gain" else f"{label} {m[k]:.3f}{bounds}"

    parts = [shown("win_rate", "win rate vs baseline"), shown("win_rate_vs_previous", "vs previous"),
             shown("gain", "paired gain")]
    return ", ".join(p for p in parts if p) + f" on {m.get(f'iter{t}/eval_prompts', 0)} prompts"


@stage("selfplay", SelfPlayConfig, outputs={"model": "."}, distributed="train")
def selfplay(cfg: SelfPlayConfig, ctx: StageContext) -> dict:
    """Self-Play Preference Optimization: T iterations of sample, judge, pair, train."""
    out = ctx.out_dir
    world = current_world()
    judge = build_judge(cfg.judge, progress=ctx.show_progress and world.is_main)
    eval_judge = build_judge(cfg.eval_judge) if cfg.eval_judge else judge
    prompts = load_prompts(cfg, "train", cfg.count, cfg.seed)
    parts = [prompts[t :: cfg.iterations] for t in range(cfg.iterations)]
    if any(not p for p in parts):
        raise DataError(f"{len(prompts)} prompts cannot be split into {cfg.iterations} non-empty parts")
    held_out = world.on_main(write_jsonl, out / "eval_prompts.jsonl", load_prompts(cfg, "test", cfg.eval_count, cfg.seed))
    baseline = cfg.baseline or cfg.model

    def answer(model: str, folder: Path) -> list[dict]:
        """`model`'s answers to the held-out prompts: every policy with the same temperature and seed."""
        return sample_responses(model, held_out, folder, cfg, cfg.eval_samples, cfg.eval_temperature, cfg.seed)

    base_answers = answer(baseline, out / "baseline_eval")
    # pi_0, the starting policy, on the same prompts: iteration 1's "previous" (the baseline's answers when it is pi_0).
    prev_answers = base_answers if baseline == cfg.model else answer(cfg.model, out / "iter0" / "eval")
    metrics: dict[str, float] = {}
    judged0 = out / "iter0" / "judged.jsonl"
    if judged0.exists():
        prev_vs_base = read_judged(judged0)
    else:
        prev_vs_base = judged_probabilities(prev_answers, base_answers, eval_judge, world)
        judged0.parent.mkdir(parents=True, exist_ok=True)
        world.on_main(write_judged, judged0, prev_vs_base, None)
    metrics.update(iteration_metrics(0, prev_vs_base, None, None))
    acc0 = accuracy(prev_answers)
    if acc0 is not None:
        metrics["iter0/accuracy"] = acc0

    policy = cfg.model
    for t in range(1, cfg.iterations + 1):
        it = out / f"iter{t}"
        done = it / "done.json"
        if done.exists():  # resume: this iteration finished before an interruption
            metrics.update(json.loads(done.read_text()))
            policy = str(it / "model")
            prev_answers, prev_vs_base = read_jsonl(it / "eval" / "samples.jsonl"), read_judged(it / "judged.jsonl")
            continue
        it.mkdir(parents=True, exist_ok=True)
        part_file = world.on_main(write_jsonl, it / "prompts.jsonl", parts[t - 1])
        samples = sample_responses(policy, part_file, it / "generate", cfg, cfg.num_samples, cfg.temperature, cfg.seed + t)
        pairs, counts = build_pairs(samples, judge, with_scores="gpo" in iteration_objective(cfg), world=world)
        if not pairs:
            raise DataError(f"iteration {t}: the judge preferred no response over another on any prompt ({counts})")
        pairs_file = world.on_main(write_jsonl, it / "pairs.jsonl", pairs)
        train = iteration_train_config(cfg, policy, str(pairs_file), t)
        if len(pairs) < train["batch_size"] * train.get("gradient_accumulation_steps", 1) * world.size:
            if len(pairs) < world.size:
                raise DataError(f"iteration {t}: {len(pairs)} pairs cannot be shared by {world.size} processes")
            ctx.log.warning(f"iteration {t}: only {len(pairs)} pairs; training on one batch of all of them")
            train.update(batch_size=len(pairs) // world.size, gradient_accumulation_steps=1)
        run_stage("train", train, it / "model")
        policy = str(it / "model")
        answers = answer(policy, it / "eval")
        vs_base = judged_probabilities(answers, base_answers, eval_judge, world)
        vs_prev = (vs_base if prev_answers is base_answers
                   else judged_probabilities(answers, prev_answers, eval_judge, world))
        result = {f"iter{t}/pairs": counts["pairs"], f"iter{t}/dropped_invalid": counts["dropped_invalid"],
                  f"iter{t}/dropped_ties": counts["dropped_ties"],
                  **{f"iter{t}/{k}": v for k, v in sample_diagnostics(samples).items()},
                  **iteration_metrics(t, vs_base, vs_prev, prev_vs_base)}
        acc = accuracy(answers)
        if acc is not None:
            result[f"iter{t}/accuracy"] = acc
        world.on_main(write_judged, it / "judged.jsonl", vs_base, vs_prev)
        world.on_main(write_json, done, result)
        metrics.update(result)
        ctx.log.info(f"self-play iteration {t}: {iteration_line(result, t)}" + (f", accuracy {acc:.3f}" if acc is not None else ""))
        prev_answers, prev_vs_base = answers, vs_base
    world.on_main(copy_model, Path(policy), out)
    base_acc = accuracy(base_answers)
    if base_acc is not None:
        metrics["baseline_accuracy"] = base_acc
    metrics["win_rate"] = metrics[f"iter{cfg.iterations}/win_rate"]
    if f"iter{cfg.iterations}/accuracy" in metrics:
        metrics["accuracy"] = metrics[f"iter{cfg.iterations}/accuracy"]
    return metrics
