"""Stage `eval`: built-in task accuracy (greedy, optional pass@k) and any lm-eval task.

`podium eval` dispatches: `podium eval preference ...` scores a preference model,
`podium eval CONFIG.yaml` runs this stage alone, and `podium eval --model DIR --tasks ...`
runs built-in and lm-eval tasks by name (`open-llm-v1` / `open-llm-v2` suites too).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from podium.data.mixture import load_rows
from podium.data.records import write_json
from podium.evaluation.task_accuracy import task_accuracy
from podium.models.io import load_model, load_tokenizer
from podium.stages import StageConfig, StageContext, stage
from podium.tasks import TASKS, get_task


class EvalConfig(StageConfig):
    model: str
    data: str | None = Field(None, description="JSONL of task items {prompt, answer, task}")
    task: str | None = Field(None, description="or a built-in task family, drawn from its test split")
    count: int = Field(200, ge=1)
    difficulty: dict = Field(default_factory=dict)
    seed: int = 0
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1)
    pass_k: int | None = Field(None, ge=1)
    num_samples: int | None = Field(None, ge=1)
    temperature: float = Field(0.8, gt=0)
    lm_eval_tasks: list[str] = Field(default_factory=list, description="lm-eval task or suite names")
    include_path: str | None = Field(None, description="folder of local lm-eval task YAMLs")
    num_fewshot: int | None = Field(None, ge=0)
    limit: float | None = Field(None, gt=0, description="lm-eval: examples per task (or a fraction)")
    apply_chat_template: bool = False
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] | None = Field(
        None, description="unset: chosen per model (podium.models.io.choose_attn_implementation)")


def eval_items(cfg: EvalConfig) -> list[dict]:
    if cfg.data:
        return load_rows(cfg.data)
    return get_task(cfg.task).items(cfg.count, split="test", seed=cfg.seed, **cfg.difficulty)


def builtin_task_scorers(count: int = 200, seed: int = 0) -> dict:
    """Scorers for `run_eval`: {task name: fn(model, tokenizer, num_fewshot, limit) -> {"accuracy": v}}."""

    def scorer(name):
        def score(model, tokenizer, num_fewshot=None, limit=None):
            items = get_task(name).items(int(limit or count), split="test", seed=seed)
            return {"accuracy": task_accuracy(model, tokenizer, items)[f"accuracy/{name}"]}

        return score

    return {name: scorer(name) for name in TASKS}


@stage("eval", EvalConfig, outputs={"results": "results.json"})
def evaluate(cfg: EvalConfig, ctx: StageContext) -> dict:
    """Held-out accuracy on verifiable task prompts, and lm-eval tasks on the same in-memory model."""
    model = load_model(cfg.model, attn_implementation=cfg.attn_implementation)
    tokenizer = load_tokenizer(cfg.model)
    metrics: dict[str, float] = {}
    if cfg.data or cfg.task or not cfg.lm_eval_tasks:
        metrics = task_accuracy(
            model, tokenizer, eval_items(cfg), max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
            pass_k=cfg.pass_k, num_samples=cfg.num_samples, temperature=cfg.temperature, seed=cfg.seed,
            show_progress=ctx.show_progress,
        )
    result = {"tasks": {k.split("/", 1)[1]: {"accuracy": v} for k, v in metrics.items() if k.startswith("accuracy/")}}
    raw: dict = {}
    if cfg.lm_eval_tasks:
        from podium.evaluation.cli import run_eval

        external = run_eval(model, tokenizer, cfg.lm_eval_tasks, include_path=cfg.include_path,
                            num_fewshot=cfg.num_fewshot, limit=cfg.limit, raw=raw, model_path=cfg.model,
                            apply_chat_template=cfg.apply_chat_template)
        result["tasks"].update(external["tasks"])
    from podium.evaluation.outputs import write_eval_outputs

    metrics.update(write_eval_outputs(ctx.out_dir, result, raw))
    write_json(ctx.out_dir / "metrics_detail.json", {"model": cfg.model, "metrics": metrics})
    return metrics


def eval_command(argv: list[str]) -> int:
    """`podium eval ...`: preference models, a stage config, or tasks by name."""
    if argv and argv[0] == "preference":
        from podium.judging.cli import main

        return main(argv[1:])
    if argv and argv[0].endswith((".yaml", ".yml")):
        from podium.cli import cmd_stage

        return cmd_stage("eval", argv)
    from podium.evaluation.cli import main

    return main(argv, builtin_tasks=builtin_task_scorers())
