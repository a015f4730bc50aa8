"""Self-play's per-iteration measurement: the same held-out prompts and seed for every policy, win rates against the
baseline and the previous iteration, the paired gain with its bootstrap interval, the dry-run's standard error,
and the per-iteration table of the report and the card."""

import json
import math

import pytest

from podium.cards.iterations import iteration_table
from podium.files import read_jsonl
from podium.judging.build import JudgeSpec, build_judge
from podium.selfplay.held_out import expected_standard_error, iteration_metrics
from podium.stages import run_stage


def test_iteration_metrics_worked_example():
    """Four prompts, verifier outcomes against the baseline a(t−1) = [½, 0, ½, 1], a(t) = [1, ½, ½, 1]:
    win rate (1 + ½ + ½ + 1)/4 = 0.75; per-prompt gain [½, ½, 0, 0], mean 0.25; a prompt the judge could not
    compare (None) leaves the paired mean and the win rate vs previous."""
    m = iteration_metrics(2, [1, 0.5, 0.5, 1, None], [1, 1, 0.5, 0.5, 0.5], [0.5, 0, 0.5, 1, 0.5])
    assert m["iter2/win_rate"] == 0.75 and m["iter2/eval_prompts"] == 4
    assert m["iter2/gain"] == 0.25
    assert m["iter2/win_rate_vs_previous"] == pytest.approx(3.5 / 5)
    assert m["iter2/gain_low"] <= 0.25 <= m["iter2/gain_high"] and m["iter2/gain_high"] <= 0.5
    assert m["iter2/win_rate_low"] >= 0.5  # no resample of [1, ½, ½, 1] has a mean below ½
    assert "iter0/gain" not in iteration_metrics(0, [0.5, 0.5], None, None)


def test_expected_standard_error():
    """0.5/sqrt(n): n = 2000 gives 0.01118 (the "about 1 point" of one win rate); a paired gain with a share q of
    changed prompts sqrt(q/(4n)): q = 0.1 at n = 2000 gives 0.003536."""
    se = expected_standard_error(2000)
    assert se["win_rate"] == pytest.approx(0.0111803, abs=1e-7)
    assert se["gain@0.1"] == pytest.approx(0.0035355, abs=1e-7)


def test_dry_run_prints_the_expected_standard_error(tmp_path, capsys):
    from podium.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1,"
                      " num_heads: 2}\n  - {name: sp, kind: selfplay, model: '@base', count: 4, iterations: 2,"
                      " eval_count: 400}\n")
    assert main(["run", str(recipe), "--output", str(tmp_path / "run"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[sp] eval_count 400: win rate standard error <= 0.0250" in out  # 0.5 / sqrt(400)
    assert not (tmp_path / "run" / "sp").exists()


@pytest.fixture(scope="module")
def gpm_dir(tiny_dir, tmp_path_factory):
    import torch
    from transformers import AutoModel

    from podium.models.heads import build_preference_model
    from podium.models.io import load_tokenizer, save_model

    torch.manual_seed(0)
    model = build_preference_model("gpm", AutoModel.from_pretrained(tiny_dir), k=2)
    path = tmp_path_factory.mktemp("gpm") / "model"
    save_model(model, load_tokenizer(tiny_dir), path)
    return path


def test_every_iteration_is_judged_on_the_same_prompts_against_baseline_and_previous(tiny_dir, gpm_dir, tmp_path):
    judge = {"kind": "gpm", "model": str(gpm_dir)}
    cfg = {"model": str(tiny_dir), "task": "arithmetic", "count": 8, "iterations": 2, "num_samples": 3,
           "max_new_tokens": 6, "eval_count": 6, "eval_temperature": 1.0, "eval_samples": 2, "judge": judge,
           "objective": "sppo",
           "train": {"batch_size": 2, "learning_rate": 1e-2, "max_length": 64}}
    m = run_stage("selfplay", cfg, tmp_path)
    gpm = build_judge(JudgeSpec(**judge))
    answers = {t: read_jsonl(tmp_path / ("baseline_eval" if t == 0 else f"iter{t}/eval") / "samples.jsonl")
               for t in (0, 1, 2)}
    # The same prompts, in the same order, sampled with the same seed by every policy.
    prompts = [[r["prompt"] for r in answers[t]] for t in answers]
    assert prompts[0] == prompts[1] == prompts[2]
    assert {r["generator"]["seed"] for t in answers for r in answers[t]} == {0}
    assert all(len(r["responses"]) == 2 for t in answers for r in answers[t])

    def p(new, old):  # per prompt: answer j against answer j, averaged over the 2 answers
        return [sum(float(gpm.judge(a["prompt"], [a["responses"][j], b["responses"][j]]).matrix[0, 1])
                    for j in (0, 1)) / 2 for a, b in zip(new, old)]

    base = {t: p(answers[t], answers[0]) for t in answers}
    assert m["iter0/win_rate"] == pytest.approx(0.5)  # pi_0 is the baseline: its answers tie with themselves
    for t in (1, 2):
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        assert m[f"iter{t}/win_rate"] == pytest.approx(mean(base[t]), abs=1e-6)
        assert m[f"iter{t}/win_rate_vs_previous"] == pytest.approx(mean(p(answers[t], answers[t - 1])), abs=1e-6)
        gain = mean([a - b for a, b in zip(base[t], base[t - 1])])
        assert m[f"iter{t}/gain"] == pytest.approx(gain, abs=1e-6)
        assert m[f"iter{t}/gain"] == pytest.approx(m[f"iter{t}/win_rate"] - m[f"iter{t - 1}/win_rate"], abs=1e-6)
        assert m[f"iter{t}/gain_low"] <= m[f"iter{t}/gain"] <= m[f"iter{t}/gain_high"]
        judged = read_jsonl(tmp_path / f"iter{t}" / "judged.jsonl")
        assert [r["vs_baseline"] for r in judged] == pytest.approx(base[t], abs=1e-6)
    assert m["iter1/win_rate_vs_previous"] == pytest.approx(m["iter1/win_rate"])

    # Resumed after iteration 1: iteration 2 is compared with iteration 1's saved answers, and gives the same numbers.
    (tmp_path / "iter2" / "done.json").unlink()
    again = run_stage("selfplay", cfg, tmp_path)
    assert again["iter2/gain"] == pytest.approx(m["iter2/gain"]) and again["iter2/win_rate_vs_previous"] == \
        pytest.approx(m["iter2/win_rate_vs_previous"])


def test_a_baseline_other_than_the_starting_policy(tiny_dir, gpm_dir, tmp_path):
    """pi_0 (the stage's model) is answered and judged against the baseline too: iteration 1's gain is over it."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    other = save_model(*build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=5),
                       tmp_path / "other")
    m = run_stage("selfplay", {"model": str(tiny_dir), "baseline": str(other), "task": "arithmetic", "count": 4,
                               "iterations": 1, "num_samples": 3, "max_new_tokens": 6, "eval_count": 5,
                               "judge": {"kind": "gpm", "model": str(gpm_dir)},
                               "train": {"batch_size": 2, "max_length": 64}}, tmp_path / "sp")
    assert (tmp_path / "sp" / "iter0" / "eval" / "samples.jsonl").exists()
    assert m["iter1/gain"] == pytest.approx(m["iter1/win_rate"] - m["iter0/win_rate"], abs=1e-6)


def test_iteration_table_in_report_and_card(tmp_path):
    from cards_run_fixture import add_stage

    from podium.cards.model_card import write_card
    from podium.cards.report import write_report
    from podium.rundir import write_run_report

    metrics = {"iter0/win_rate": 0.5, "iter0/accuracy": 0.55, "iter1/win_rate": 0.58, "iter1/win_rate_low": 0.56,
               "iter1/win_rate_high": 0.6, "iter1/win_rate_vs_previous": 0.58, "iter1/gain": 0.08,
               "iter1/gain_low": 0.06, "iter1/gain_high": 0.1, "iter1/accuracy": 0.71, "iter1/pairs": 512,
               "iter1/eval_prompts": 1000, "win_rate": 0.58}
    table = iteration_table(metrics)
    assert "| 0 (start) | 50.0 | — | — | 55.0 | — |" in table
    assert "| 1 | 58.0 [56.0, 60.0] | 58.0 | +8.0 [+6.0, +10.0] | 71.0 | 512 |" in table
    run = tmp_path / "run"
    entry = add_stage(run, "sppo", "selfplay", {"model": "org/m", "task": "arithmetic", "iterations": 1}, metrics, 5.0)
    write_run_report(run, None, None, [entry])
    for text in (write_report(run).read_text(), write_card(run).read_text()):
        assert "`sppo`: self-play iterations" in text and "the same 1000 held-out prompts" in text
        assert "+8.0 [+6.0, +10.0]" in text
    assert math.isclose(json.loads((run / "report.json").read_text())["stages"][0]["metrics"]["iter1/gain"], 0.08)


def test_several_greedy_answers_are_a_config_error():
    from pydantic import ValidationError

    from podium.selfplay.sppo import SelfPlayConfig

    with pytest.raises(ValidationError, match="eval_samples 3 needs eval_temperature > 0"):
        SelfPlayConfig(model="m", eval_samples=3)
