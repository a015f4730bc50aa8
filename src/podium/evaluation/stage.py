"""Stage `eval`: built-in task accuracy (greedy, optional pass@k) and any lm-eval task.

`podium eval CONFIG.yaml` runs this stage alone (podium.cli.eval also scores models by task name
and preference models).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from podium.data.mixture import Mixture
from podium.data.prompt_source import PromptSource
from podium.evaluation.named_tasks import run_eval
from podium.evaluation.outputs import write_eval_outputs
from podium.evaluation.task_accuracy import task_accuracy
from podium.files import write_json
from podium.models.attention_choice import AttnImplementation
from podium.models.io import load_model, load_tokenizer
from podium.refs import FileRef, ModelRef
from podium.stages import StageContext, stage


class EvalConfig(PromptSource):
    """Task prompts with gold answers: `prompts` (`data` is accepted too), or `count` items of the task's test split."""

    model: ModelRef
    prompts: Mixture | None = Field(None, validation_alias=AliasChoices("prompts", "data"),
                                    description="task items {prompt, answer, task}: a JSONL file, dataset or mixture")
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1)
    pass_k: int | None = Field(None, ge=1)
    num_samples: int | None = Field(None, ge=1)
    temperature: float = Field(0.8, gt=0)
    lm_eval_tasks: list[str] = Field(default_factory=list, description="lm-eval task or suite names")
    include_path: FileRef | None = Field(None, description="folder of local lm-eval task YAMLs")
    num_fewshot: int | None = Field(None, ge=0)
    limit: float | None = Field(None, gt=0, description="lm-eval: examples per task (or a fraction)")
    apply_chat_template: bool = False
    attn_implementation: AttnImplementation = None


def eval_items(cfg: EvalConfig) -> list[dict]:
    return cfg.prompt_rows() if cfg.prompts else cfg.task_items("test")


@stage("eval", EvalConfig, outputs={"results": "results.json"})
def evaluate(cfg: EvalConfig, ctx: StageContext) -> dict:
    """Held-out accuracy on verifiable task prompts, and lm-eval tasks on the same in-memory model."""
    model = load_model(cfg.model, attn_implementation=cfg.attn_implementation)
    tokenizer = load_tokenizer(cfg.model)
    metrics: dict[str, float] = {}
    if cfg.prompts or cfg.task or not cfg.lm_eval_tasks:
        metrics = task_accuracy(
            model, tokenizer, eval_items(cfg), max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
            pass_k=cfg.pass_k, num_samples=cfg.num_samples, temperature=cfg.temperature, seed=cfg.seed,
            show_progress=ctx.show_progress,
        )
    result = {"tasks": {k.split("/", 1)[1]: {"accuracy": v} for k, v in metrics.items() if k.startswith("accuracy/")}}
    raw: dict = {}
    if cfg.lm_eval_tasks:
        external = run_eval(model, tokenizer, cfg.lm_eval_tasks, include_path=cfg.include_path,
                            num_fewshot=cfg.num_fewshot, limit=cfg.limit, raw=raw, model_path=cfg.model,
                            apply_chat_template=cfg.apply_chat_template)
        result["tasks"].update(external["tasks"])
    metrics.update(write_eval_outputs(ctx.out_dir, result, raw))
    write_json(ctx.out_dir / "metrics_detail.json", {"model": cfg.model, "metrics": metrics})
    return metrics
