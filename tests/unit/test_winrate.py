"""Raw and length-controlled (AlpacaEval 2 GLM) win rates."""

import numpy as np
import pytest

from podium.errors import DataError
from podium.evaluation.winrate import length_controlled_win_rate, length_feature, win_rate


def test_raw_win_rate_counts_ties_as_half():
    """p = [1, 0.5, 0, 1] -> 100 * 2.5/4 = 62.5."""
    assert win_rate([1, 0.5, 0, 1]) == pytest.approx(62.5)


def test_length_feature_is_tanh_of_std_normalised_difference():
    """Δ = [1, -1] -> std (ddof=1) = sqrt(2) -> tanh(±1/sqrt(2)) = ±0.6089."""
    f = length_feature([2, 1], [1, 2])
    assert f == pytest.approx([np.tanh(1 / np.sqrt(2)), -np.tanh(1 / np.sqrt(2))])


def test_equal_lengths_lc_equals_raw():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 0.9, size=200)
    out = length_controlled_win_rate(p, [100] * 200, [100] * 200)
    assert out["win_rate"] == pytest.approx(100 * p.mean())
    assert out["lc_win_rate"] == pytest.approx(out["win_rate"], abs=1e-4)


def test_length_biased_judge_lowers_lc_for_the_longer_model():
    """Same quality (θ = 0), but the judge adds 1.5·tanh(Δ/std) to the logit and the model is
    usually longer: raw > 50, the GLM recovers φ ≈ 1.5 and θ ≈ 0, so LC ≈ 50 < raw."""
    rng = np.random.default_rng(1)
    base = rng.integers(200, 400, size=500)
    model = base + rng.normal(80, 100, size=500)
    delta = model - base
    p = 1 / (1 + np.exp(-1.5 * np.tanh(delta / delta.std(ddof=1))))
    out = length_controlled_win_rate(p, model, base)
    assert out["win_rate"] > 60
    assert out["phi"] == pytest.approx(1.5, abs=1e-3)
    assert out["theta"] == pytest.approx(0.0, abs=1e-3)
    assert out["lc_win_rate"] == pytest.approx(50.0, abs=0.05)
    assert out["lc_win_rate"] < out["win_rate"]


def test_given_instruction_difficulty_is_fitted_and_kept_in_lc():
    """logit = 0.5 + 0 · length + 1.0 · γ with γ ∈ {-1, 1}: LC = mean(σ(-0.5), σ(1.5)) · 100
    = (0.37754 + 0.81757)/2 · 100 = 59.756 (lengths random, uninformative)."""
    rng = np.random.default_rng(2)
    ids = [f"q{i % 2}" for i in range(400)]
    difficulty = {"q0": -1.0, "q1": 1.0}
    gamma = np.array([difficulty[i] for i in ids])
    p = 1 / (1 + np.exp(-(0.5 + gamma)))
    out = length_controlled_win_rate(p, rng.integers(1, 500, 400), rng.integers(1, 500, 400),
                                     instruction_ids=ids, instruction_difficulty=difficulty)
    assert out["psi"] == pytest.approx(1.0, abs=1e-3)
    assert out["lc_win_rate"] == pytest.approx(59.756, abs=0.01)


def test_repeated_instruction_ids_fit_per_instruction_effects():
    """Without lengths in play, per-id effects + θ reproduce the raw win rate (ridge on the
    id effects only shifts mass between them and θ, the fitted mean stays the data mean)."""
    ids = ["a", "a", "b", "b", "c", "c"]
    p = [0.9, 0.8, 0.2, 0.3, 0.5, 0.6]
    out = length_controlled_win_rate(p, [10] * 6, [10] * 6, instruction_ids=ids)
    assert out["lc_win_rate"] == pytest.approx(100 * np.mean(p), abs=1e-3)


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError):
        length_controlled_win_rate([0.5, 1.2], [1, 2], [1, 2])
    with pytest.raises(DataError):
        length_controlled_win_rate([0.5, 0.2], [1], [1, 2])


def test_cli_reads_responses_and_writes_json(tmp_path, capsys):
    import json

    from podium.cli.winrate import main

    rows = [{"preference": 1.0, "model_response": "long answer", "baseline_response": "short"},
            {"preference": 0.0, "model_length": 3, "baseline_length": 9},
            {"preference": 0.5, "model_length": 5, "baseline_length": 5}]
    src = tmp_path / "j.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "wr.json"
    assert main([str(src), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["win_rate"] == pytest.approx(50.0)
    assert "win rate 50.00" in capsys.readouterr().out


def test_cli_missing_preference_names_file_and_line(tmp_path):
    from podium.cli.winrate import main

    src = tmp_path / "j.jsonl"
    src.write_text('{"preference": 1, "model_length": 1, "baseline_length": 1}\n{"model_length": 1}\n')
    with pytest.raises(DataError, match=r"j.jsonl:2: field `preference`"):
        main([str(src)])


def test_preferences_from_reward_scores():
    """σ(2 - 2) = 0.5; σ(ln 3 - 0) = 3/4."""
    from podium.evaluation.winrate import preferences_from_scores

    assert preferences_from_scores([2.0, np.log(3)], [2.0, 0.0]) == pytest.approx([0.5, 0.75])
