"""Where a stage's prompts come from, independent of any model: `PromptSource`.

The `sgd`, `selfplay` and `eval` stages inherit these settings, so a recipe writes them the same
way everywhere::

    - {name: eval_sft, kind: eval, model: "@sft", task: arithmetic, count: 500, difficulty: {max_digits: 2}}
    - {name: sgd, kind: sgd, model: "@sft", prompts: data/questions.jsonl}

Either `prompts` (a dataset or a mixture of prompt records; task items keep `answer` and `task`)
or `count` items of the built-in `task` (default: arithmetic) at a `difficulty`, drawn with `seed`.
The task and its difficulty keys are checked when the config is validated.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from podium.config import invalid
from podium.data.mixture import Mixture, build_mixture, task_problems
from podium.stages import StageConfig
from podium.tasks import get_task


class PromptSource(StageConfig):
    """Prompt settings shared by the stages that generate from or evaluate on prompts."""

    prompts: Mixture | None = Field(None, description="a prompt dataset or mixture (task items keep 'answer' "
                                    "and 'task'; `gold:` reads them from a dataset); `format:` / `columns:` map "
                                    "other layouts")
    task: str | None = Field(None, description="or draw prompts from a built-in task (default: arithmetic)")
    count: int = Field(200, ge=1, description="how many task items")
    difficulty: dict[str, Any] = Field(default_factory=dict, description="the task's difficulty settings")
    seed: int = 0

    @model_validator(mode="after")
    def _check_task(self):
        if self.prompts is None:
            for loc, message in task_problems(self.task, self.difficulty, self.count):
                raise invalid(loc, message, self.task if loc == ("task",) else self.difficulty.get(loc[-1]))
        return self

    def task_items(self, split: str, n: int | None = None, seed: int | None = None) -> list[dict]:
        """`n` (default `count`) items `{prompt, answer, task}` of the task's `split`."""
        return get_task(self.task).items(n or self.count, split=split, seed=self.seed if seed is None else seed,
                                         **self.difficulty)

    def prompt_rows(self, shuffle: bool = False, seed: int | None = None) -> list[dict]:
        """The prompt records of `prompts` (a mixture draws each source to its count, reads it with its format
        and gold-answer settings; `shuffle` mixes them): `prompt` plus `answer`, `task`, `reference` when known."""
        rows, _ = build_mixture(self.prompts, seed=self.seed if seed is None else seed, shuffle=shuffle, use="prompts")
        return rows
