"""Run report of a synthetic run dir: markdown next to report.json plus PNG plots."""

from cards_run_fixture import make_run

from podium.cards.report import accuracy_points, win_rate_points, write_report
from podium.cards.run_info import load_run
from podium.rundir import StageRecord, write_stage_record

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_writes_markdown_and_plots(tmp_path):
    run = make_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.md"
    text = out.read_text()
    for png in ("report/dpo_training.png", "report/accuracy.png", "report/win_rate.png"):
        assert f"]({png})" in text
        assert (run / png).read_bytes().startswith(PNG)
    assert "| `dpo` | train | ran | 30 |" in text
    assert "iter 1: 55.0 %, iter 2: 61.0 %" in text  # fractions in report.json, percent on display
    # metrics.jsonl's last line was cut short: six steps survive.
    assert "Last step 6" in text


def test_accuracy_and_win_rate_points(tmp_path):
    run = load_run(make_run(tmp_path))
    assert accuracy_points(run) == {"arithmetic": {"eval": 0.4}, "accuracy": {"sppo": 0.36}}
    assert win_rate_points(run) == {"win_rate": {1: 0.55, 2: 0.61}}


def test_report_of_a_run_without_metrics_has_no_plots(tmp_path):
    run = tmp_path / "r"
    write_stage_record(run / "gen", StageRecord("gen", "generate", "k", config={}))
    (run / "notes").mkdir()  # not a stage folder: no stage.json
    text = write_report(run).read_text()
    assert "`notes`" not in text
    assert "`gen`" in text
    assert not list((run / "report").glob("*.png"))


def test_report_tables_hardware_utilisation(tmp_path):
    """Medians over the steps that logged MFU; the peak is model FLOP/s over MFU (here 10 GFLOP/s / 0.25)."""
    import json

    run = make_run(tmp_path)
    rows = [{"step": 1, "loss": 0.7, "tokens_per_second": 100.0, "flops_per_second": 1e10, "mfu": 0.25},
            {"step": 2, "loss": 0.6, "tokens_per_second": 300.0, "flops_per_second": 3e10, "mfu": 0.75},
            {"step": 3, "loss": 0.5, "tokens_per_second": 200.0, "flops_per_second": 2e10, "mfu": 0.5}]
    (run / "dpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(run).read_text()
    assert "## Hardware utilisation" in text
    assert "| `dpo` | 3 | 200 | 20 | 40 | 50.0 % |" in text
    assert "`sft` | 1" not in text  # no MFU logged: no row
