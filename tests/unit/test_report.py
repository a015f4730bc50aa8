"""Run report of a synthetic run dir: markdown next to report.json plus PNG plots."""

from cards_run_fixture import make_run

from podium.cards.report import accuracy_points, win_rate_points, write_report
from podium.cards.run_info import load_run

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_writes_markdown_and_plots(tmp_path):
    run = make_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.md"
    text = out.read_text()
    for png in ("report/dpo_training.png", "report/accuracy.png", "report/win_rate.png"):
        assert f"]({png})" in text
        assert (run / png).read_bytes().startswith(PNG)
    assert "| `dpo` | train | done | 30 |" in text
    assert "iter 1: 55.00, iter 2: 61.00" in text
    # metrics.jsonl's last line was cut short: six steps survive.
    assert "Last step 6" in text


def test_accuracy_and_win_rate_points(tmp_path):
    run = load_run(make_run(tmp_path))
    assert accuracy_points(run) == {"gsm8k_toy": {"dpo": 0.31, "sppo": 0.36, "eval": 0.4}}
    assert win_rate_points(run) == {"win_rate": {1: 55.0, 2: 61.0}, "lc_win_rate": {1: 52.0, 2: 57.5}}


def test_report_of_a_run_without_metrics_has_no_plots(tmp_path):
    run = tmp_path / "r"
    (run / "gen").mkdir(parents=True)
    (run / "gen" / "config.json").write_text("{}")
    text = write_report(run).read_text()
    assert "`gen`" in text
    assert not list((run / "report").glob("*.png"))
