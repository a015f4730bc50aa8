"""Eval stage outputs (results.json, leaderboard files, flat metrics) round-trip into the model card."""

import json

import pytest
from huggingface_hub import ModelCard

from podium.cards.model_card import write_card
from podium.evaluation.outputs import flat_metrics, write_eval_outputs

V1_RAW = {
    "arc_challenge": {"acc,none": 0.55, "acc_norm,none": 0.6},
    "hellaswag": {"acc_norm,none": 0.8},
    "mmlu_virology": {"acc,none": 0.6},
    "truthfulqa_mc2": {"acc,none": 0.45},
    "winogrande": {"acc,none": 0.7},
    "gsm8k": {"exact_match,strict-match": 0.3},
}


def test_flat_metric_names():
    result = {"tasks": {"toy": {"accuracy": 0.5}, "arc_challenge": {"acc_norm": 0.6}}}
    boards = {"v1": {"average": 57.5, "tasks": {"arc": 60.0}}}
    assert flat_metrics(result, boards) == {"accuracy/toy": 0.5, "arc_challenge/acc_norm": 0.6,
                                            "leaderboard_v1/average": 57.5, "leaderboard_v1/arc": 60.0}


def test_eval_outputs_feed_the_card(tmp_path):
    """v1 from V1_RAW: 60, 80, 60, 45, 70, 30 -> average 345/6 = 57.5."""
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "config.json").write_text("{}")
    result = {"tasks": {"toy": {"accuracy": 0.25}}}
    metrics = write_eval_outputs(run / "eval", result, raw=V1_RAW)
    assert metrics["leaderboard_v1/average"] == pytest.approx(57.5)
    assert metrics["accuracy/toy"] == 0.25
    assert not (run / "eval" / "leaderboard_v2.json").exists()
    board = json.loads((run / "eval" / "leaderboard_v1.json").read_text())
    assert board["tasks"]["gsm8k"] == pytest.approx(30.0)

    (run / "report.json").write_text(json.dumps({"stages": [
        {"name": "eval", "kind": "eval", "status": "done", "seconds": 1.0, "metrics": metrics}]}))
    data = ModelCard.load(write_card(run)).data
    values = {r.dataset_name: r.metric_value for r in data.eval_results}
    assert values["AI2 Reasoning Challenge (25-Shot)"] == pytest.approx(60.0)
    assert values["GSM8k (5-shot)"] == pytest.approx(30.0)
    assert values["toy"] == pytest.approx(25.0)
