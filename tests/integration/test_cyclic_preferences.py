"""GPM paper's cyclic-preference result at toy scale (Zhang et al. 2024, arXiv:2410.02197).

On rock ≻ scissors ≻ paper ≻ rock, a GPM reaches ≥ 95% held-out pair accuracy; a Bradley–Terry
reward model on the same pairs and the same backbone stays ≤ 70% (a scalar orders at most two of
the three relations, 66.7%). About 30 s on one CPU core.
"""

import sys
from pathlib import Path

import pytest
import torch

from podium.judging import GPMJudge, win_probabilities

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.fixture(scope="module")
def runs():
    from cyclic_preferences import run_cyclic

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield {kind: run_cyclic(kind, eval_every=600) for kind in ("gpm", "reward")}
    finally:
        torch.set_num_threads(n)


def test_gpm_learns_the_cycle_and_bradley_terry_cannot(runs):
    assert runs["gpm"]["accuracy"] >= 0.95, runs["gpm"]["curve"]
    assert runs["reward"]["accuracy"] <= 0.70, runs["reward"]["curve"]


def test_trained_gpm_judge_sees_the_cycle(runs):
    """Through the judge interface each type wins once and loses once: win probabilities ≈ 1/2."""
    judge = GPMJudge(runs["gpm"]["model"], runs["gpm"]["tokenizer"])
    P = judge.preference_matrix("pick zzzz", ["rock abc", "paper abc", "scissors abc"]).matrix
    assert P[0, 2] > 0.9 and P[2, 1] > 0.9 and P[1, 0] > 0.9  # rock ≻ scissors ≻ paper ≻ rock
    assert torch.allclose(win_probabilities(P), torch.full((3,), 0.5), atol=0.05)


def test_eval_preference_cli_on_the_saved_models(runs, tmp_path, capsys):
    """Save both trained models, then `podium eval preference` reproduces their accuracies."""
    import json

    from podium.cli.preference import main

    data = tmp_path / "cyclic_test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in runs["gpm"]["test"]))
    for kind, run in runs.items():
        run["model"].save(tmp_path / kind, run["tokenizer"])
        assert main(["--model", str(tmp_path / kind), "--data", str(data)]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result == {"accuracy": pytest.approx(run["accuracy"]), "count": 150}
