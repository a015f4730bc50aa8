"""Arithmetic of controllable difficulty: `a op b` with up to `max_digits` digits per operand."""

from __future__ import annotations

import random

from podium.errors import ConfigError
from podium.tasks.base import TaskFamily, last_number

MAX_DIGITS = 100  # operands of a language model's arithmetic; larger ones would only cost time
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class Arithmetic(TaskFamily):
    """Prompt "What is 47 + 38?", gold "85", taught answer "47 + 38 = 85".

    Difficulty: `min_digits`/`max_digits` per operand and the operators `ops` ("+-*").
    The worked answer restates the operands so a small model has a scratchpad, and the
    last number of a response is its answer.
    """

    name = "arithmetic"

    def sample(self, rng: random.Random, min_digits: int = 1, max_digits: int = 2, ops: str = "+-"):
        if not 1 <= min_digits <= max_digits <= MAX_DIGITS:
            raise ConfigError(f"task arithmetic: need 1 <= min_digits <= max_digits <= {MAX_DIGITS}, got {min_digits}, "
                              f"{max_digits}")
        bad = [o for o in ops if o not in OPS]
        if bad or not ops:
            raise ConfigError(f"task arithmetic: ops must be made of {''.join(OPS)}, got {ops!r}")
        op = rng.choice(ops)
        a = rng.randint(0 if min_digits == 1 else 10 ** (min_digits - 1), 10**rng.randint(min_digits, max_digits) - 1)
        b = rng.randint(0 if min_digits == 1 else 10 ** (min_digits - 1), 10**rng.randint(min_digits, max_digits) - 1)
        key = f"{a}{op}{b}"
        return key, f"What is {a} {op} {b}?", str(OPS[op](a, b))

    def check(self, response: str, answer: str) -> bool:
        return last_number(response) == last_number(answer)

    def credit(self, response: str, answer: str) -> float:
        """The share of the answer's characters (digits and sign, aligned from the units digit) that the response's
        last number gets right, over the longer of the two: 1 exactly when `check` passes, 0 without a number.

        Gold "85": "85" -> 1, "83" -> 1/2 (the tens), "185" -> 2/3, "-85" -> 2/3, "7" -> 0, "no idea" -> 0.
        """
        got, gold = last_number(response), last_number(answer)
        if got is None or gold is None:
            return 0.0
        if got == gold:
            return 1.0
        width = max(len(got), len(gold))
        a, b = got.rjust(width), gold.rjust(width)
        return sum(x == y for x, y in zip(a, b)) / width

    def format_answer(self, item: dict) -> str:
        expr = item["prompt"].removeprefix("What is ").rstrip("?")
        return f"{expr} = {item['answer']}"
