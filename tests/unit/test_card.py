"""Model card of a synthetic run: front matter loads back through huggingface_hub with its eval results."""

import pytest
from cards_run_fixture import make_run
from huggingface_hub import ModelCard

from podium.cards.model_card import write_card
from podium.cards.stage import CardConfig, card
from podium.cli.card import main as card_main
from podium.stages import StageContext


def test_card_loads_back_with_model_index(tmp_path):
    run = make_run(tmp_path)
    out = write_card(run, license="apache-2.0")
    loaded = ModelCard.load(out)
    data = loaded.data
    assert data.license == "apache-2.0"
    assert data.base_model == ["org/base-7b"]
    assert data.datasets == ["org/chat-mix"]  # the run-internal pairs.jsonl is not a dataset id
    assert data.pipeline_tag == "text-generation"
    assert {"podium", "dpop", "sppo"} <= set(data.tags)

    results = {(r.dataset_name, r.metric_type): r for r in data.eval_results}
    # v2 leaderboard recomputed from results.json: IFEval (0.8 + 0.7)/2*100 = 75.
    ifeval = results[("IFEval (0-Shot)", "inst_level_strict_acc and prompt_level_strict_acc")]
    assert ifeval.metric_value == pytest.approx(75.0)
    assert ifeval.dataset_args == {"num_few_shot": 0}
    assert ifeval.task_type == "text-generation" and ifeval.source_url
    # MMLU-Pro k=10: (0.37-0.1)/0.9*100 = 30.
    assert results[("MMLU-PRO (5-shot)", "acc")].metric_value == pytest.approx(30.0)
    assert results[("MMLU-PRO (5-shot)", "acc")].dataset_split == "test"
    # Local task and built-in accuracy are reported in percent.
    assert results[("toy_mc", "acc_norm")].metric_value == pytest.approx(62.5)
    assert results[("arithmetic", "accuracy")].metric_value == pytest.approx(40.0)
    assert results[("arithmetic", "pass@4")].metric_value == pytest.approx(55.0)
    assert not any(r.dataset_name == "eval" for r in data.eval_results)  # overall accuracy not repeated
    # The self-play stage's win rate (a fraction, 0.61, in report.json) is shown in percent.
    assert results[("Win rate against org/base-7b", "win_rate")].metric_value == pytest.approx(61.0)
    # Leaderboard subtasks are folded into the leaderboard rows, not listed again.
    assert not any(r.dataset_name.startswith("leaderboard_") for r in data.eval_results)

    text = loaded.text
    assert "DPO-Positive" in text and "arXiv:2402.13228" in text  # method + citation
    assert "| beta | 0.3 |" in text and "| lora.r | 16 |" in text  # hyperparameters
    assert "kind: train" in text  # the recipe
    assert "|IFEval (0-Shot)" in text  # seed-card results table
    assert "bbh: averaged without 23 subtask(s)" in text  # the fixture runs one BBH subtask


def test_card_of_a_bare_run_dir_is_still_written(tmp_path):
    run = tmp_path / "empty_run"
    run.mkdir()
    (run / "report.json").write_text('{"recipe": "r.yaml", "name": null, "stages": []}')  # no stage finished yet
    out = write_card(run)
    loaded = ModelCard.load(out)
    assert loaded.data.license == "other"
    assert not loaded.data.eval_results
    assert "No evaluation results" in loaded.text


def test_card_without_report_json_uses_stage_folders(tmp_path):
    run = make_run(tmp_path, with_report=False)
    loaded = ModelCard.load(write_card(run))
    names = {r.dataset_name for r in loaded.data.eval_results}
    assert "BBH (3-Shot)" in names and "toy_mc" in names


def test_card_cli_and_stage(tmp_path, capsys):
    run = make_run(tmp_path)
    assert card_main([str(run), "--output", str(tmp_path / "cli" / "README.md"), "--tag", "math"]) == 0
    assert "math" in ModelCard.load(tmp_path / "cli" / "README.md").data.tags
    assert (run / "report.md").is_file()  # the card command also writes the run report
    (run / "report.md").unlink()

    out_dir = run / "card"
    out_dir.mkdir()
    metrics = card(CardConfig(license="mit"), StageContext(name="card", out_dir=out_dir, run_dir=run, kind="card"))
    assert ModelCard.load(out_dir / "README.md").data.license == "mit"
    assert metrics["eval_results"] > 0
    assert (run / "report.md").is_file()


def test_card_stage_is_registered_with_its_output():
    import podium.cards.stage  # noqa: F401
    from podium.stages import STAGES

    assert STAGES["card"].outputs == {"card": "README.md"}
    assert STAGES["card"].config is CardConfig


def test_model_config_in_a_model_stage_folder_is_not_read_as_hyperparameters(tmp_path):
    """A model stage saves the model into its folder, so its config.json is the model's; stage.json is the stage's."""
    run = make_run(tmp_path)
    text = ModelCard.load(write_card(run)).text
    assert "hidden_size" not in text
    assert "| beta | 0.3 |" in text and "| lambda | 50.0 |" in text
    assert "| learning_rate | 2e-05 |" in text


def test_a_stage_folder_without_stage_json_takes_its_settings_from_the_recipe(tmp_path):
    run = make_run(tmp_path)
    (run / "sft" / "stage.json").unlink()
    (run / "recipe.yaml").write_text("stages:\n  - {name: sft, kind: sft, model: org/base-7b, learning_rate: 0.003}\n")
    text = ModelCard.load(write_card(run)).text
    assert "| learning_rate | 0.003 |" in text and "hidden_size" not in text


def test_card_reports_only_its_own_models_evaluations(tmp_path):
    import json

    from podium.cards.model_index import collect_scores
    from podium.cards.run_info import load_run
    from podium.rundir import StageRecord, write_stage_done, write_stage_record

    run = tmp_path / "run"
    for name, model, acc in (("eval_a", run / "a", 0.25), ("eval_b", run / "b", 0.75)):
        (run / name).mkdir(parents=True)
        config = {"model": str(model), "task": "arithmetic"}
        write_stage_record(run / name, StageRecord(name, "eval", name, config=config))
        write_stage_done(run / name, name, 0.1, {"accuracy": acc})
    (run / "report.json").write_text(json.dumps({"recipe": "r.yaml", "stages": [
        {"name": n, "kind": "eval", "status": "ran", "seconds": 0.1, "metrics": {"accuracy": a}}
        for n, a in (("eval_a", 0.25), ("eval_b", 0.75))]}))
    info = load_run(run)
    assert collect_scores(info, str(run / "a")).tasks["arithmetic"]["accuracy"] == 0.25
    assert collect_scores(info, str(run / "b")).tasks["arithmetic"]["accuracy"] == 0.75
    assert collect_scores(info, str(run / "elsewhere")).tasks["arithmetic"]["accuracy"] == 0.75  # none matched: all
