"""Stage `tasks`: write train and test items of built-in task families as JSONL.

For a task with pairwise preferences (rps), `pairs: N` also writes N preference records labelled
with the true preference (pairs.jsonl), e.g. to train a reward model or a GPM on.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from podium.files import write_jsonl
from podium.stages import StageConfig, StageContext, stage
from podium.tasks import get_task


class TasksConfig(StageConfig):
    task: str = "arithmetic"
    train: int = Field(1000, ge=0)
    test: int = Field(200, ge=0)
    pairs: int = Field(0, ge=0, description="preference pairs labelled by the true preference (pairwise tasks)")
    seed: int = 0
    difficulty: dict[str, Any] = Field(default_factory=dict)


@stage("tasks", TasksConfig, outputs={"train": "train.jsonl", "test": "test.jsonl", "pairs": "pairs.jsonl"})
def tasks(cfg: TasksConfig, ctx: StageContext) -> dict:
    """Prompts with gold answers from a built-in task family; train and test are disjoint."""
    family = get_task(cfg.task)
    for split, n in (("train", cfg.train), ("test", cfg.test)):
        write_jsonl(ctx.out_dir / f"{split}.jsonl", family.items(n, split=split, seed=cfg.seed, **cfg.difficulty))
    if cfg.pairs:
        write_jsonl(ctx.out_dir / "pairs.jsonl", family.preference_pairs(cfg.pairs, seed=cfg.seed, **cfg.difficulty))
    return {"train": cfg.train, "test": cfg.test, "pairs": cfg.pairs}
