"""Verifiable task families: seeded item generators with gold answers and answer checkers."""

from __future__ import annotations

import hashlib
import random
import re
from abc import ABC, abstractmethod

from podium.errors import ConfigError
from podium.limits import SOURCE_ROWS

TEST_SHARE = 5  # one item in TEST_SHARE (by content hash) belongs to the test split


def split_of(key: str) -> str:
    """Deterministic split by content hash, so train and test never share an item."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return "test" if h % TEST_SHARE == 0 else "train"


class TaskFamily(ABC):
    """A family of items `{"prompt", "answer", "task"}` whose answers a checker can verify.

    A family whose truth is a preference between two responses rather than a gold answer sets
    `pairwise = True` and defines `prefer(a, b) -> P(a ≻ b)` (see podium.tasks.rps); a verifier
    judge then compares responses with it instead of checking each against the answer.
    """

    name: str
    pairwise: bool = False

    @abstractmethod
    def sample(self, rng: random.Random, **difficulty) -> tuple[str, str, str]:
        """Draw one item: (canonical key, prompt, gold answer)."""

    @abstractmethod
    def check(self, response: str, answer: str) -> bool:
        """Whether a model response states the gold answer."""

    def credit(self, response: str, answer: str) -> float:
        """Partial credit in [0, 1] for a response (1 exactly when `check` passes); binary unless a family grades.

        A graded judge (podium.judging.graded) turns the difference of two responses' credit into a
        preference probability, the way PairRM's scores are turned into one."""
        return float(bool(self.check(response, answer)))

    @abstractmethod
    def format_answer(self, item: dict) -> str:
        """The gold answer written the way the model is taught to answer."""

    def prefer(self, a: str, b: str) -> float:
        """P(a ≻ b) under the task's true preference (pairwise families only)."""
        raise NotImplementedError(f"task {self.name} has no pairwise preference")

    def preference_pairs(self, n: int, seed: int = 0, **difficulty) -> list[dict]:
        """`n` preference records {prompt, chosen, rejected} labelled by the true preference (pairwise families)."""
        raise ConfigError(f"task {self.name}: preference pairs need a task with pairwise preferences (e.g. rps)")

    def items(self, n: int, split: str = "train", seed: int = 0, **difficulty) -> list[dict]:
        """`n` items of `split`, deterministic in `seed`; test items are distinct.

        The first `n` items of a seed are always the same, so models compared on the same `n` see the
        same prompts. Because test items are distinct and a difficulty has few easy items (there are
        only 200 one-digit sums and differences), a larger `n` holds a larger share of hard items:
        the quickstart's SFT model scores 34 % on 300 test items and 19 % on 2000.
        """
        if split not in ("train", "test"):
            raise ConfigError(f"task {self.name}: split must be 'train' or 'test', got {split!r}")
        check_count(n, f"task {self.name}")
        rng = random.Random(f"{self.name}:{split}:{seed}")
        out, seen, tries = [], set(), 0
        while len(out) < n:
            tries += 1
            if tries > 200 * n + 10_000:
                raise ConfigError(
                    f"task {self.name}: could not draw {n} distinct {split} items at this difficulty "
                    f"({len(out)} found); ask for fewer or widen the difficulty"
                )
            key, prompt, answer = self.sample(rng, **difficulty)
            if split_of(f"{self.name}:{key}") != split:
                continue
            if split == "test" and key in seen:
                continue
            seen.add(key)
            out.append({"prompt": prompt, "answer": answer, "task": self.name})
        return out


def check_count(n: int, what: str) -> None:
    """Refuse a number of items above `podium.limits.SOURCE_ROWS` (a `count: 1e12` would spin and fill memory)."""
    if n > SOURCE_ROWS.value:
        raise ConfigError(f"{what}: {n:,} items is over the limit on {SOURCE_ROWS.what} ({SOURCE_ROWS.shown()}); "
                          f"{SOURCE_ROWS.raise_hint()}")


NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number written in `text`, without thousands separators ("1,234." -> "1234")."""
    found = NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value
