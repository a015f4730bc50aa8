"""A game of moves whose true preferences are intransitive: rock-paper-scissors plus a bomb and water.

A prompt asks for a move ("Round kqzv: your move?"); a response names one. The true preference
P(a ≻ b) between two responses is the game's (rows beat columns):

    rock ≻ scissors ≻ paper ≻ rock      (a cycle)
    bomb ≻ rock, paper, scissors        (the bully: wins most encounters)
    water ≻ bomb                        (defuses it)
    water ~ rock, paper, scissors       (a tie: P = 1/2)

equal moves tie, and a response that names no move loses to one that does. No scalar reward orders
the cycle (a Bradley–Terry model gets at most 2 of its 3 relations right), and a scalar fitted to
pairs from a policy that mostly plays the bully ranks the bully first, because it wins most of its
comparisons — while the move that beats a bully-playing policy is water. A GPM can represent all of
it (Zhang et al. 2024, arXiv:2410.02197, §3). Self-play judged by the true preference (or a GPM that
learned it) therefore moves from the bully to water; self-play judged by a Bradley–Terry model stays
with the bully, and loses head to head.

The items' gold `answer` is a move drawn with probabilities `weights` (in MOVES order; default rock,
paper, scissors 0.2 each, bomb 0.3, water 0.1): SFT on them gives a policy that plays that mix, and
`check` (the response names the gold move) measures how well it imitates it. `preference_pairs`
draws two moves from the same mix, as pairs of the SFT policy's samples would be drawn, and labels
each with an outcome of the true preference (a tie between different moves is a fair coin).
"""

from __future__ import annotations

import math
import random
import re
import string

from podium.errors import ConfigError
from podium.tasks.base import TaskFamily, check_count

MOVES = ("rock", "paper", "scissors", "bomb", "water")
BEATS = {  # move -> the moves it beats
    "rock": {"scissors"}, "scissors": {"paper"}, "paper": {"rock"},
    "bomb": {"rock", "paper", "scissors"}, "water": {"bomb"},
}
DEFAULT_WEIGHTS = (0.2, 0.2, 0.2, 0.3, 0.1)
MOVE = re.compile(r"\b(" + "|".join(MOVES) + r")\b")


def move_of(response: str) -> str | None:
    """The last move a response names (None if it names none)."""
    found = MOVE.findall(response.lower())
    return found[-1] if found else None


def true_preference(a: str, b: str) -> float:
    """P(a ≻ b) under the game: 1 if a's move beats b's, 0 if b's beats a's, 1/2 otherwise (ties, two non-moves)."""
    ma, mb = move_of(a), move_of(b)
    if ma == mb:
        return 0.5
    if mb is None:
        return 1.0
    if ma is None:
        return 0.0
    if mb in BEATS[ma]:
        return 1.0
    if ma in BEATS[mb]:
        return 0.0
    return 0.5


class RockPaperScissors(TaskFamily):
    name = "rps"
    pairwise = True

    def sample(self, rng: random.Random, weights: tuple[float, ...] | list[float] = DEFAULT_WEIGHTS):
        if (not isinstance(weights, (list, tuple)) or len(weights) != len(MOVES)
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                           for w in weights) or sum(weights) <= 0):
            raise ConfigError(f"task rps: weights are {len(MOVES)} non-negative numbers for "
                              f"{', '.join(MOVES)}, got {weights!r}")
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
        """`n` pairs of different moves drawn from the items' mix; chosen = the winner of one outcome of the game."""
        check_count(n, f"task {self.name} pairs")
        items = self.items(2 * n + 100, split="train", seed=seed, **difficulty)
        rng = random.Random(f"{self.name}:pairs:{seed}")
        pairs = []
        for _ in range(20 * n + 1000):
            first, second = rng.choice(items), rng.choice(items)
            a, b = first["answer"], second["answer"]
            if a == b:
                continue
            win, lose = (a, b) if rng.random() < true_preference(a, b) else (b, a)
            pairs.append({"prompt": [{"role": "user", "content": first["prompt"]}],
                          "chosen": [{"role": "assistant", "content": win}],
                          "rejected": [{"role": "assistant", "content": lose}], "task": self.name})
            if len(pairs) == n:
                return pairs
        raise ConfigError(f"task rps: could not draw {n} pairs of different moves with these weights")
