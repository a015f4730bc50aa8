"""Stage `eval`: accuracy on built-in task prompts (greedy, optional sampled pass@k)."""

from __future__ import annotations

from pydantic import Field

from podium.data.mixture import load_rows
from podium.data.records import write_json
from podium.evaluation.task_accuracy import task_accuracy
from podium.models.io import load_model, load_tokenizer
from podium.stages import StageConfig, StageContext, stage
from podium.tasks import get_task


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


def eval_items(cfg: EvalConfig) -> list[dict]:
    if cfg.data:
        return load_rows(cfg.data)
    return get_task(cfg.task or "arithmetic").items(cfg.count, split="test", seed=cfg.seed, **cfg.difficulty)


@stage("eval", EvalConfig, outputs={"results": "results.json"})
def evaluate(cfg: EvalConfig, ctx: StageContext) -> dict:
    """Held-out accuracy on verifiable task prompts."""
    model, tokenizer = load_model(cfg.model), load_tokenizer(cfg.model)
    metrics = task_accuracy(
        model, tokenizer, eval_items(cfg), max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
        pass_k=cfg.pass_k, num_samples=cfg.num_samples, temperature=cfg.temperature, seed=cfg.seed,
        show_progress=ctx.show_progress,
    )
    write_json(ctx.out_dir / "results.json", {"model": cfg.model, "metrics": metrics})
    return metrics
