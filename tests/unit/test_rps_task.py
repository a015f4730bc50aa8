"""The rock-paper-scissors task: intransitive true preferences, its pairs, and the verifier judge on it."""

import json
from collections import Counter

import pytest
import torch

from podium.errors import ConfigError
from podium.judging.build import JudgeSpec, build_judge
from podium.stages import run_stage
from podium.tasks import get_task
from podium.tasks.rps import move_of, true_preference


def test_true_preference_of_the_game():
    # rock ≻ scissors ≻ paper ≻ rock
    assert true_preference("rock", "scissors") == 1.0
    assert true_preference("scissors", "paper") == 1.0
    assert true_preference("paper", "rock") == 1.0
    assert true_preference("scissors", "rock") == 0.0
    # bomb beats the three, water beats bomb and ties with the three
    assert all(true_preference("bomb", m) == 1.0 for m in ("rock", "paper", "scissors"))
    assert true_preference("water", "bomb") == 1.0 and true_preference("bomb", "water") == 0.0
    assert all(true_preference("water", m) == 0.5 for m in ("rock", "paper", "scissors"))
    assert true_preference("rock", "Rock!") == 0.5
    assert true_preference("I pick paper", "no idea") == 1.0 and true_preference("??", "paper") == 0.0
    assert true_preference("??", "pass") == 0.5
    assert move_of("rock then scissors") == "scissors" and move_of("rocky") is None


def test_items_follow_the_weights_and_check_imitation():
    task = get_task("rps")
    items = task.items(4000, seed=1)
    share = Counter(it["answer"] for it in items)
    assert abs(share["bomb"] / 4000 - 0.3) < 0.03 and abs(share["water"] / 4000 - 0.1) < 0.02
    it = items[0]
    assert it["prompt"].startswith("Round ") and task.format_answer(it) == it["answer"]
    assert task.check(f"I play {it['answer']}", it["answer"])
    assert {x["answer"] for x in task.items(50, seed=2, weights=[0, 0, 1, 0, 0])} == {"scissors"}
    with pytest.raises(ConfigError, match="weights"):
        task.items(3, weights=[1, 2])


def test_preference_pairs_are_outcomes_of_the_game():
    pairs = get_task("rps").preference_pairs(3000, seed=0)
    assert len(pairs) == 3000
    outcomes = Counter((p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs)
    for w, l in outcomes:
        assert w != l and true_preference(w, l) > 0.0, (w, l)  # never the loser of a decided game
    # A tie between different moves is a fair coin: water over rock about as often as rock over water.
    ties = outcomes[("water", "rock")], outcomes[("rock", "water")]
    assert min(ties) > 0 and abs(ties[0] - ties[1]) < 0.35 * sum(ties)
    # Drawn from the default mix, bomb over the three is the most frequent kind of pair.
    assert outcomes[("bomb", "rock")] > outcomes[("water", "bomb")] > 0
    with pytest.raises(ConfigError, match="pairwise"):
        get_task("arithmetic").preference_pairs(3)


def test_tasks_stage_writes_pairs(tmp_path):
    metrics = run_stage("tasks", {"task": "rps", "train": 5, "test": 5, "pairs": 30}, tmp_path)
    assert metrics["pairs"] == 30
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {"prompt", "chosen", "rejected"} <= set(rows[0])


def test_verifier_judge_uses_the_true_preference_on_a_pairwise_task():
    judge = build_judge(JudgeSpec(kind="verifier"))
    P = judge.judge("Round abcd: your move?", ["rock", "paper", "scissors", "bomb", "water"], answer="rock",
                    task="rps").matrix
    # rows beat columns: the game's table (rock, paper, scissors, bomb, water)
    expected = torch.tensor([[0.5, 0.0, 1.0, 0.0, 0.5], [1.0, 0.5, 0.0, 0.0, 0.5], [0.0, 1.0, 0.5, 0.0, 0.5],
                             [1.0, 1.0, 1.0, 0.5, 0.0], [0.5, 0.5, 0.5, 1.0, 0.5]])
    assert torch.equal(P, expected)


def test_selfplay_win_rate_under_another_judge(tiny_dir, tmp_path):
    """Trained with a (random) GPM judge, measured with the task's true preference: the win rate equals
    the mean true preference of the saved greedy answers, derived here from the files."""
    from transformers import AutoModel

    from podium.files import read_jsonl
    from podium.models.heads import build_preference_model
    from podium.models.io import load_tokenizer, save_model

    torch.manual_seed(0)
    gpm = save_model(build_preference_model("gpm", AutoModel.from_pretrained(tiny_dir), k=2),
                     load_tokenizer(tiny_dir), tmp_path / "gpm")
    m = run_stage("selfplay", {
        "model": str(tiny_dir), "task": "rps", "count": 8, "iterations": 1, "num_samples": 3, "max_new_tokens": 4,
        "eval_count": 6, "judge": {"kind": "gpm", "model": str(gpm)}, "eval_judge": {"kind": "verifier"},
        "train": {"batch_size": 2, "learning_rate": 1e-3, "max_length": 64}}, tmp_path / "sp")
    new = read_jsonl(tmp_path / "sp" / "iter1" / "eval" / "samples.jsonl")
    base = read_jsonl(tmp_path / "sp" / "baseline_eval" / "samples.jsonl")
    valid = [(a["responses"][0], b["responses"][0]) for a, b in zip(new, base)
             if a["responses"][0].strip() and b["responses"][0].strip()]
    expected = sum(true_preference(a, b) for a, b in valid) / len(valid)
    assert m["iter1/win_rate"] == pytest.approx(expected)
