"""Raw and length-controlled (AlpacaEval 2) win rates: worked examples, the four synthetic cases of
issue 15 against their known length-neutral truth, the CLI, and bad input."""

import json

import numpy as np
import pytest
from tests.lc_synthetic import CASES, make

from podium.cli.winrate import main
from podium.errors import DataError
from podium.evaluation.length_controlled import length_feature, regularised_lc
from podium.evaluation.winrate import head_to_head, win_rate, winrate_report

SEEDS = (0, 1, 2, 3)


def test_raw_win_rate_counts_ties_as_half():
    """p = [1, 0.5, 0, 1] -> 100 * 2.5/4 = 62.5."""
    assert win_rate([1, 0.5, 0, 1]) == pytest.approx(62.5)


def test_head_to_head_worked_example(tmp_path):
    """AlpacaEval preferences [1, 2, 1.5, 0, 1.75, null] -> p = [0, 1, .5, .5, .75] (null left out, 0 a draw):
    win rate 2.75/5 = 55; wins (p > .5) 2, baseline wins 1, draws 2, n 5; discrete [0, 1, .5, .5, 1] -> 60;
    standard error: mean .55, squared deviations .3025+.2025+.0025+.0025+.04 = .55, var .55/4 = .1375,
    sd .370810, / sqrt(5) = .165832 -> 16.5832."""
    prefs = [1, 2, 1.5, 0, 1.75, None]
    rows = [{"instruction": f"q{i}", "output_1": "b" * 10, "output_2": "m" * (10 + i), "preference": v, "index": i,
             "generator_1": "base", "generator_2": "mine"} for i, v in enumerate(prefs)]
    src = tmp_path / "annotations.json"
    src.write_text(json.dumps(rows))
    out = winrate_report(src)
    assert out["win_rate"] == pytest.approx(55.0)
    assert out["standard_error"] == pytest.approx(16.5832, abs=1e-4)
    assert (out["n_wins"], out["n_wins_base"], out["n_draws"], out["n_total"]) == (2, 1, 2, 5)
    assert out["discrete_win_rate"] == pytest.approx(60.0)
    assert (out["generator"], out["baseline"], out["format"]) == ("mine", "base", "alpaca_eval")
    assert head_to_head([0, 1, 0.5, 0.5, 0.75])["win_rate"] == pytest.approx(55.0)


def test_length_feature_uses_the_baseline_length_spread():
    """Baseline lengths [100, 300]: sd (ddof=1) = 141.42; Δ = [+100, -100] -> tanh(±0.70711) = ±0.60885."""
    assert length_feature([200, 200], [100, 300]) == pytest.approx([0.60885, -0.60885], abs=1e-5)
    assert length_feature([5, 5], [5, 5]) == pytest.approx([0.0, 0.0])


def test_equal_lengths_lc_is_the_raw_win_rate():
    """No length difference: the length term is 0 and θ alone fits the mean; its N(0, 1.5²) prior moves it by
    less than 0.1 point on 200 rows."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 0.9, size=200)
    out = regularised_lc(p, [100] * 200, [100] * 200)
    assert out["length_controlled_winrate"] == pytest.approx(100 * p.mean(), abs=0.1)


@pytest.mark.parametrize("case", list(CASES))
def test_regularised_lc_stays_near_the_length_neutral_truth(case):
    """Issue 15's four cases on 805 synthetic instructions, four seeds each: podium's offline estimate is
    within 15 points of the truth the judge would give with the length term at zero."""
    for seed in SEEDS:
        synth = make(case, seed)
        from podium.evaluation.annotations import annotations_from_rows

        ann = annotations_from_rows([(f"row {i}", r) for i, r in enumerate(synth.rows)])
        out = winrate_report(ann)
        assert out["estimator"] == "podium-regularised-glm"
        assert abs(out["length_controlled_winrate"] - synth.truth) < 15, (case, seed, out, synth.truth)
        assert out["win_rate"] == pytest.approx(synth.raw)


def test_posterior_sd_of_the_lc_win_rate():
    """Equal lengths, no difficulty, N rows with p = 0.6: the LC is σ(θ) with θ's posterior precision
    N·q(1−q) + 1/1.5² = N·0.24 + 0.444; delta method: sd = 100·q(1−q)/sqrt(precision).
    N = 800: 100·0.24/sqrt(192.444) = 1.7301 (a binomial proportion's 100·sqrt(0.24/800) = 1.7321)."""
    out = regularised_lc([0.6] * 800, [10] * 800, [10] * 800)
    q = out["length_controlled_winrate"] / 100
    assert out["lc_posterior_sd"] == pytest.approx(100 * q * (1 - q) / np.sqrt(800 * q * (1 - q) + 1 / 1.5**2), rel=1e-6)
    assert out["lc_posterior_sd"] == pytest.approx(1.7301, abs=2e-3)


def test_unregularised_fit_runs_away_on_the_collinear_case():
    """Why the priors: the GLM on alpaca_eval's feature tanh(Δ / std Δ) with (nearly) flat priors, on the
    equal-but-longer case, drifts far from the truth of ~50 (Δ always > 0: θ and the length term are collinear)."""
    from podium.evaluation.length_controlled import fit_map, sigmoid

    synth = make("equal_longer", 0)
    p = np.array([r["preference"] - 1 for r in synth.rows])
    delta = np.array([len(r["output_2"]) - len(r["output_1"]) for r in synth.rows], dtype=float)
    X = np.stack([np.ones_like(p), np.tanh(delta / delta.std(ddof=1))], axis=1)
    theta = fit_map(X, p, np.zeros(2), np.full(2, 1e3))[0]
    assert abs(100 * sigmoid(theta) - synth.truth) > 25


def test_known_instruction_difficulty_is_used(tmp_path):
    """With γ from an instruction_difficulty.csv, ψ is fitted (the judge's is 1) and LC stays near the truth."""
    synth = make("better_longer", 0)
    paths = synth.write(tmp_path)
    out = winrate_report(paths["annotations"], instruction_difficulty=paths["instruction_difficulty"])
    assert out["difficulty"] == "instruction_difficulty file"
    assert out["fit"]["psi"] == pytest.approx(1.0, abs=0.3)
    assert abs(out["length_controlled_winrate"] - synth.truth) < 15


def test_repeated_instruction_ids_fit_per_instruction_effects():
    """Several samples per instruction, no lengths in play: θ plus one effect per id reproduce the raw
    win rate (their zero-mean priors barely move the fitted mean on 120 rows)."""
    ps = [0.9, 0.8, 0.2, 0.3, 0.5, 0.6] * 20
    rows = [{"preference": p, "model_length": 10, "baseline_length": 10, "prompt": "aabbcc"[i % 6]}
            for i, p in enumerate(ps)]
    from podium.evaluation.annotations import annotations_from_rows

    ann = annotations_from_rows([(str(i), r) for i, r in enumerate(rows)])
    assert ann.instruction_ids[:6] == list("aabbcc")
    out = winrate_report(ann)
    assert out["length_controlled_winrate"] == pytest.approx(100 * np.mean(ps), abs=0.5)


def test_cli_reads_alpaca_eval_jsonl_and_writes_the_leaderboard_numbers(tmp_path, capsys):
    synth = make("better_equal", 0)
    src = tmp_path / "annotations.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in synth.rows))
    out = tmp_path / "wr.json"
    assert main([str(src), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("win_rate", "length_controlled_winrate", "standard_error", "n_total", "estimator"):
        assert key in report
    assert report["n_total"] == 805 and report["estimator"] == "podium-regularised-glm"
    assert "estimator podium-regularised-glm" in capsys.readouterr().out


def test_cli_with_df_gamed_says_alpaca_eval_estimator(tmp_path, capsys):
    paths = make("equal_longer", 1).write(tmp_path)
    out = tmp_path / "wr.json"
    main([str(paths["annotations"]), "--df-gamed", str(paths["df_gamed"]), "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["estimator"] == "alpaca_eval-0.6.6-glm"
    assert report["difficulty"] == "df_gamed"
    assert set(report["fit"]["weights"]) == {"np.tanh(std_delta_len)", "instruction_difficulty",
                                             "not_gamed_baseline.astype(float)"}


def test_cli_reads_podium_judgments(tmp_path, capsys):
    rows = [{"preference": 1.0, "model_response": "long answer", "baseline_response": "short"},
            {"preference": 0.0, "model_length": 3, "baseline_length": 9},
            {"preference": 0.5, "model_length": 5, "baseline_length": 5}]
    src = tmp_path / "j.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "wr.json"
    assert main([str(src), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["win_rate"] == pytest.approx(50.0) and report["format"] == "podium"
    assert "win rate 50.00" in capsys.readouterr().out


@pytest.mark.parametrize("row, message", [
    ({"preference": 0.7}, r"row 2: field `preference` = 0.7 is not on AlpacaEval's scale"),
    ({"preference": 3}, r"row 2: field `preference` = 3 is not on AlpacaEval's scale"),
    ({"preference": "2"}, r"row 2: field `preference`: expected a number"),
    ({"output_2": None}, r"row 2: field `output_2` is missing"),
    ({"output_1": 12}, r"row 2: field `output_1` is not a string"),
    ({"generator_2": "other"}, r"row 2: field `generator_2` = 'other' but .*row 1 has 'mine'"),
    ({"index": -1}, r"row 2: field `index` is -1, not an instruction index"),
])
def test_bad_alpaca_eval_rows_name_file_row_and_field(tmp_path, row, message):
    good = {"instruction": "q", "output_1": "base", "output_2": "model", "preference": 1.5, "index": 0,
            "generator_1": "base", "generator_2": "mine"}
    src = tmp_path / "annotations.json"
    src.write_text(json.dumps([good, {**good, "index": 1, **row}]))
    with pytest.raises(DataError, match=r"annotations.json: " + message):
        winrate_report(src)


@pytest.mark.parametrize("row, message", [
    ({"preference": 1.5}, r"j.jsonl:2: field `preference` = 1.5: expected P\(model > baseline\) in \[0, 1\] — "
                          r"AlpacaEval's \[1, 2\] scale"),
    ({"model_length": 4, "model_response": "abc"}, r"j.jsonl:2: field `model_length` = 4 but `model_response` has 3"),
    ({"model_length": None}, r"j.jsonl:2: give `model_length` or `model_response`"),
    ({"preference": None}, r"j.jsonl:2: field `preference` \(P\(model > baseline\)\) is missing"),
])
def test_bad_podium_rows_name_file_line_and_field(tmp_path, row, message):
    good = {"preference": 0.5, "model_length": 3, "baseline_length": 4}
    src = tmp_path / "j.jsonl"
    src.write_text(json.dumps(good) + "\n" + json.dumps({**good, **row}) + "\n")
    with pytest.raises(DataError, match=message):
        main([str(src)])


def test_difficulty_file_must_cover_every_row(tmp_path):
    synth = make("better_equal", 0)
    paths = synth.write(tmp_path)
    paths["instruction_difficulty"].write_text("index,instruction_difficulty\n0,0.1\n1,0.2\n")
    with pytest.raises(DataError, match=r"annotations.json: row 3: field `index` = 2 has no instruction difficulty "
                                        r"in .*instruction_difficulty.csv \(it covers 2 instructions, 0..1\)"):
        winrate_report(paths["annotations"], instruction_difficulty=paths["instruction_difficulty"])


def test_df_gamed_out_of_index_order_is_noted(tmp_path):
    """alpaca_eval looks difficulties up by df_gamed's row label; podium by index, and says when they differ."""
    paths = make("better_equal", 0).write(tmp_path)
    header, *lines = paths["df_gamed"].read_text().splitlines()
    paths["df_gamed"].write_text("\n".join([header, *lines[::-1]]) + "\n")
    out = winrate_report(paths["annotations"], paths["df_gamed"])
    assert any("not in index order" in note for note in out["notes"])


def test_bad_df_gamed_names_file_line_and_column(tmp_path):
    paths = make("better_equal", 0).write(tmp_path)
    lines = paths["df_gamed"].read_text().splitlines()
    (tmp_path / "no_col.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    with pytest.raises(DataError, match=r"no_col.csv: column\(s\) not_gamed_baseline missing"):
        winrate_report(paths["annotations"], df_gamed=tmp_path / "no_col.csv")
    lines[3] = lines[3].replace(lines[3].split(",")[2], "1.7", 1)
    (tmp_path / "bad_pref.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad_pref.csv:4: column `preference` = 1.7"):
        winrate_report(paths["annotations"], df_gamed=tmp_path / "bad_pref.csv")


def test_not_json_names_file_and_line(tmp_path):
    src = tmp_path / "a.json"
    src.write_text('[{"preference": 1,\n oops}]')
    with pytest.raises(DataError, match=r"a.json:2: invalid JSON"):
        winrate_report(src)


def test_preferences_from_reward_scores():
    """σ(2 - 2) = 0.5; σ(ln 3 - 0) = 3/4."""
    from podium.evaluation.winrate import preferences_from_scores

    assert preferences_from_scores([2.0, np.log(3)], [2.0, 0.0]) == pytest.approx([0.5, 0.75])
