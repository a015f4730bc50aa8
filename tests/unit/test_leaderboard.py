"""Open LLM Leaderboard v1/v2 aggregation: worked examples computed by hand."""

import json

import pytest

from podium.cli.leaderboard import main
from podium.errors import PodiumError
from podium.evaluation.leaderboard import format_table, leaderboard, normalize

V2 = {
    "leaderboard_ifeval": {"inst_level_strict_acc,none": 0.8, "prompt_level_strict_acc,none": 0.7,
                           "inst_level_loose_acc,none": 0.99},
    "leaderboard_bbh_boolean_expressions": {"acc_norm,none": 0.75},
    "leaderboard_bbh_date_understanding": {"acc_norm,none": 0.5},
    "leaderboard_bbh_geometric_shapes": {"acc_norm,none": 0.05},
    "leaderboard_math_algebra_hard": {"exact_match,none": 0.2},
    "leaderboard_math_geometry_hard": {"exact_match,none": 0.1},
    "leaderboard_gpqa_diamond": {"acc_norm,none": 0.25},
    "leaderboard_gpqa_main": {"acc_norm,none": 0.4},
    "leaderboard_gpqa_extended": {"acc_norm,none": 0.325},
    "leaderboard_musr_murder_mysteries": {"acc_norm,none": 0.6},
    "leaderboard_musr_object_placements": {"acc_norm,none": 0.3},
    "leaderboard_musr_team_allocation": {"acc_norm,none": 0.5},
    "leaderboard_mmlu_pro": {"acc,none": 0.37},
}


def test_normalize_random_baseline_is_zero_and_below_is_clipped():
    """k=4: 0.25 -> 0; 0.625 -> (0.625-0.25)/0.75 = 0.5 -> 50; 0.1 -> negative -> 0."""
    assert normalize(0.25, 4) == 0.0
    assert normalize(0.625, 4) == pytest.approx(50.0)
    assert normalize(0.1, 4) == 0.0
    assert normalize(1.0, 10) == pytest.approx(100.0)


def test_v2_worked_example():
    """ifeval (0.8+0.7)/2*100 = 75.
    bbh: boolean k=2 0.75 -> 50; date k=6 0.5 -> (1/3)/(5/6) = 0.4 -> 40; geometric k=11 0.05 < 1/11 -> 0;
         mean 30.
    math_hard (no group entry, no n-samples: subsets weighted by their full sizes, algebra 307, geometry 132):
         (307*0.2 + 132*0.1)/(307+132) = 74.6/439 = 0.169932 -> 16.9932 (raw, no normalisation).
    gpqa (no group entry: diamond 198, extended 546, main 448):
         (198*0.25 + 546*0.325 + 448*0.4)/1192 = 406.15/1192 = 0.340730; k=4: 0.090730/0.75 -> 12.0973.
    musr: murder k=2 0.6 -> 20; objects k=5 0.3 -> 0.1/0.8 = 12.5; team k=3 0.5 -> (1/6)/(2/3) = 25;
          mean 57.5/3 = 19.1667.
    mmlu_pro k=10: 0.37 -> 0.27/0.9 = 30.
    average: (75+30+16.9932+12.0973+19.1667+30)/6 = 183.2572/6 = 30.5429.
    """
    board = leaderboard(V2, "v2")
    t = board["tasks"]
    assert t["ifeval"] == pytest.approx(75.0)
    assert t["bbh"] == pytest.approx(30.0)
    assert t["math_hard"] == pytest.approx(100 * 74.6 / 439)
    assert t["gpqa"] == pytest.approx((406.15 / 1192 - 0.25) / 0.75 * 100)
    assert t["musr"] == pytest.approx(57.5 / 3)
    assert t["mmlu_pro"] == pytest.approx(30.0)
    assert board["average"] == pytest.approx(30.5429, abs=1e-4)
    assert "missing" not in board
    assert board["sources"]["gpqa"].startswith("subtasks weighted by full subset sizes")
    # Only 3 of BBH's 24 subtasks and 2 of MATH's 7 are in V2: the board says so.
    assert len(board["partial"]["bbh"]) == 21
    assert len(board["partial"]["math_hard"]) == 5
    assert "gpqa" not in board["partial"] and "musr" not in board["partial"]


def test_v1_worked_example_with_flat_metric_names():
    """arc acc_norm 0.6 -> 60 (acc 0.55 ignored); hellaswag 0.8 -> 80;
    mmlu: subjects 0.5 and 0.7 -> 60 (group rows mmlu_stem=0.9 and mmlu=0.1 ignored);
    truthfulqa mc2 0.45 -> 45; winogrande 0.7 -> 70; gsm8k strict-match 0.3 -> 30 (flexible 0.35 ignored).
    average (60+80+60+45+70+30)/6 = 345/6 = 57.5.
    """
    results = {
        "arc_challenge": {"acc": 0.55, "acc_norm": 0.6},
        "hellaswag": {"acc,none": 0.7, "acc_norm,none": 0.8},
        "mmlu": {"acc,none": 0.1},
        "mmlu_stem": {"acc,none": 0.9},
        "mmlu_abstract_algebra": {"acc,none": 0.5},
        "mmlu_virology": {"acc,none": 0.7},
        "truthfulqa_mc2": {"acc,none": 0.45},
        "winogrande": {"acc,none": 0.7},
        "gsm8k": {"exact_match,strict-match": 0.3, "exact_match,flexible-extract": 0.35},
    }
    board = leaderboard(results, "v1")
    assert board["tasks"] == pytest.approx(
        {"arc": 60.0, "hellaswag": 80.0, "mmlu": 60.0, "truthfulqa": 45.0, "winogrande": 70.0, "gsm8k": 30.0})
    assert board["average"] == pytest.approx(57.5)


def test_missing_benchmark_gives_no_average():
    board = leaderboard({"leaderboard_mmlu_pro": {"acc,none": 0.37}}, "v2")
    assert board["average"] is None
    assert set(board["missing"]) == {"ifeval", "bbh", "math_hard", "gpqa", "musr"}


def test_table_has_seed_card_labels():
    table = format_table(leaderboard(V2, "v2"), "v2")
    lines = table.splitlines()
    assert lines[0].startswith("|") and "Metric" in lines[0] and "Value" in lines[0]
    assert lines[1].endswith(":|")
    assert any(line.startswith("|Avg.") and line.endswith("30.54|") for line in lines)
    assert any(line.startswith("|MATH Lvl 5 (4-Shot)") and line.endswith("16.99|") for line in lines)


def test_cli_reads_lm_eval_results_and_writes_json(tmp_path, capsys):
    src = tmp_path / "results.json"
    src.write_text(json.dumps({"results": V2, "config": {}}))
    out = tmp_path / "board.json"
    assert main([str(src), "--version", "v2", "--output", str(out)]) == 0
    board = json.loads(out.read_text())
    assert set(board["tasks"]) == {"ifeval", "bbh", "math_hard", "gpqa", "musr", "mmlu_pro"}
    assert board["average"] == pytest.approx(30.5429, abs=1e-4)
    assert "IFEval (0-Shot)" in capsys.readouterr().out


def test_cli_bad_json_names_file_and_line(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text('{"results":\n  {oops}')
    with pytest.raises(PodiumError, match=r"bad.json:2"):
        main([str(src)])
