"""Built-in verifiable task families (generators + checkers)."""

from podium.errors import ConfigError
from podium.tasks.arithmetic import Arithmetic
from podium.tasks.base import TaskFamily

TASKS: dict[str, TaskFamily] = {t.name: t for t in [Arithmetic()]}


def get_task(name: str) -> TaskFamily:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "TaskFamily", "get_task"]
