"""Built-in verifiable task families (generators + checkers)."""

from podium.errors import ConfigError
from podium.tasks.arithmetic import Arithmetic
from podium.tasks.base import TaskFamily
from podium.tasks.rps import RockPaperScissors

TASKS: dict[str, TaskFamily] = {t.name: t for t in [Arithmetic(), RockPaperScissors()]}
DEFAULT_TASK = "arithmetic"  # what a stage draws from when it names neither a dataset nor a task


def get_task(name: str | None = None) -> TaskFamily:
    """The built-in task family `name` (the default task when none is named)."""
    name = name or DEFAULT_TASK
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["DEFAULT_TASK", "TASKS", "TaskFamily", "get_task"]
