"""Rock-paper-scissors: a task whose true preferences among responses are intransitive.

A prompt asks for a move ("Round kqzv: your move?"); a response names one. The true preference
between two responses is the game's: rock ≻ scissors ≻ paper ≻ rock, a response that names no move
loses to one that does, equal moves tie. No scalar reward orders a cycle (a Bradley–Terry model
gets at most 2 of the 3 relations right), while a GPM can (Zhang et al. 2024, arXiv:2410.02197, §3).

The items' gold `answer` is a move drawn with probabilities `weights` (default rock 0.6, paper 0.3,
scissors 0.1): SFT on them gives a policy that plays that mix, and `check` (the response names the
gold move) measures how well it imitates it. `preference_pairs` draws two moves from the same mix,
the way pairs of the SFT policy's samples would be drawn, and labels them with the true preference.
"""

from __future__ import annotations

import random
import re
import string

from podium.errors import ConfigError
from podium.tasks.base import TaskFamily

MOVES = ("rock", "paper", "scissors")
BEATS = {"rock": "scissors", "scissors": "paper", "paper": "rock"}  # winner -> the move it beats
MOVE = re.compile(r"\b(rock|paper|scissors)\b")


def move_of(response: str) -> str | None:
    """The last move a response names (None if it names none)."""
    found = MOVE.findall(response.lower())
    return found[-1] if found else None


def true_preference(a: str, b: str) -> float:
    """P(a ≻ b) under the game: 1 if a's move beats b's, 0 if it loses, 1/2 for equal moves or two non-moves."""
    ma, mb = move_of(a), move_of(b)
    if ma == mb:
        return 0.5
    if mb is None:
        return 1.0
    if ma is None:
        return 0.0
    return 1.0 if BEATS[ma] == mb else 0.0


class RockPaperScissors(TaskFamily):
    name = "rps"
    pairwise = True

    def sample(self, rng: random.Random, weights: tuple[float, ...] | list[float] = (0.6, 0.3, 0.1)):
        if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"task rps: weights are 3 non-negative numbers for {', '.join(MOVES)}, got {weights!r}")
        tag = "".join(rng.choice(string.ascii_lowercase) for _ in range(4))
        move = rng.choices(MOVES, weights=weights)[0]
        return f"{tag}:{move}", f"Round {tag}: your move?", move

    def check(self, response: str, answer: str) -> bool:
        return move_of(response) == answer

    def format_answer(self, item: dict) -> str:
        return item["answer"]

    def prefer(self, a: str, b: str) -> float:
        return true_preference(a, b)

    def preference_pairs(self, n: int, seed: int = 0, **difficulty) -> list[dict]:
        """`n` pairs of moves drawn from the items' mix (ties skipped), chosen = the winner; train split."""
        items = self.items(4 * n + 100, split="train", seed=seed, **difficulty)
        rng = random.Random(f"{self.name}:pairs:{seed}")
        pairs = []
        for i in range(0, len(items) - 1, 2):
            a, b = items[i]["answer"], rng.choice(items)["answer"]
            if a == b:
                continue
            win, lose = (a, b) if true_preference(a, b) > 0.5 else (b, a)
            pairs.append({"prompt": [{"role": "user", "content": items[i]["prompt"]}],
                          "chosen": [{"role": "assistant", "content": win}],
                          "rejected": [{"role": "assistant", "content": lose}], "task": self.name})
            if len(pairs) == n:
                return pairs
        raise ConfigError(f"task rps: could not draw {n} pairs of different moves with these weights")
