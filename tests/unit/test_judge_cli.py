"""`podium judge`: candidate sets in, per-response scores and the K x K matrix P out, for every judge kind."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tests.pairrm_fixtures import build_tiny_pairrm

from podium.cli.dispatch import main
from podium.judging.build import JudgeSpec, build_judge
from podium.judging.pairrm import PairRMJudge
from podium.models.heads import GPMModel, RewardModel
from podium.models.pairrm import load_pairrm
from podium.models.tiny import build_tiny_model

ROWS = [{"prompt": "What is 2+2?", "responses": ["4", "The answer is 4.", "five"], "id": 7},
        {"prompt": [{"role": "user", "content": "hi"}], "responses": ["hello", "hey"]},
        {"prompt": "q", "responses": ["a", "  "]}]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def pairrm_dir(tmp_path_factory):
    return build_tiny_pairrm(tmp_path_factory.mktemp("pairrm"))["llm-blender"]


def test_pairrm_rows_get_scores_and_probabilities(pairrm_dir, tmp_path, capsys):
    out = tmp_path / "out" / "judged.jsonl"
    assert main(["judge", "--judge", "pairrm", "--model", str(pairrm_dir), "--data", str(write(tmp_path / "c.jsonl", ROWS)),
                 "--output", str(out), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["invalid"] == 1 and summary["responses"] == 7
    judged = read(out)
    assert judged[0]["id"] == 7 and judged[1]["prompt"] == ROWS[1]["prompt"]
    direct = PairRMJudge(load_pairrm(pairrm_dir, device="cpu"))
    for row, ref in zip(judged[:2], direct.judge_many([(r["prompt"], r["responses"]) for r in ROWS[:2]])):
        assert row["scores"] == pytest.approx(ref.response_scores.tolist(), abs=1e-6)
        P = torch.tensor(row["probabilities"], dtype=torch.float64)
        torch.testing.assert_close(P, ref.matrix.double(), atol=1e-6, rtol=0)
        s = torch.tensor(row["scores"], dtype=torch.float64)  # SPPO's P_ij = sigma(s_i - s_j) from the written scores
        torch.testing.assert_close(P, torch.sigmoid(s[:, None] - s[None, :]), atol=1e-6, rtol=0)
    assert judged[2]["scores"] is None and judged[2]["invalid"] == {"reason": "empty response", "responses": [1]}


@pytest.mark.parametrize("kind", ["reward", "gpm"])
def test_reward_and_gpm_scores(kind, tmp_path, capsys):
    lm, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    torch.manual_seed(0)
    model = RewardModel(lm) if kind == "reward" else GPMModel(lm, k=2)
    model.save(tmp_path / "pm", tok)
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--judge", kind, "--model", str(tmp_path / "pm"), "--data",
                 str(write(tmp_path / "c.jsonl", ROWS[:2])), "--output", str(out), "--no-progress"]) == 0
    judge = build_judge(JudgeSpec(kind=kind, model=str(tmp_path / "pm")))
    for row, src in zip(read(out), ROWS):
        P, s = torch.tensor(row["probabilities"], dtype=torch.float64), torch.tensor(row["scores"], dtype=torch.float64)
        if kind == "reward":  # Bradley-Terry: P_ij = sigma(r_i - r_j) from the written rewards
            torch.testing.assert_close(P, torch.sigmoid(s[:, None] - s[None, :]).fill_diagonal_(0.5), atol=1e-6, rtol=0)
        else:  # the GPM's s_hat_i = mean_j L_ij (L_ij = log(P_ij / P_ji)), the GPO target
            L = judge.judge(src["prompt"], src["responses"]).scores.double()
            torch.testing.assert_close(s, L.mean(dim=1), atol=1e-6, rtol=0)
            torch.testing.assert_close(P, torch.sigmoid(L).fill_diagonal_(0.5), atol=1e-6, rtol=0)


def test_verifier_scores_are_correctness(tmp_path):
    rows = [{"prompt": "What is 2+3?", "responses": ["5", "6", "The answer is 5"], "answer": "5", "task": "arithmetic"}]
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--judge", "verifier", "--data", str(write(tmp_path / "c.jsonl", rows)), "--output", str(out),
                 "--no-progress"]) == 0
    (row,) = read(out)
    assert row["scores"][1] == 0.0 and row["probabilities"][0][1] == 1.0


@pytest.mark.parametrize("row,kind,match", [
    ({"prompt": "p"}, "pairrm", ":2: missing field 'responses'"),
    ({"prompt": "p", "responses": "a"}, "pairrm", ":2: field 'responses' must be a non-empty list of strings"),
    ({"prompt": "p", "responses": ["a", 3]}, "pairrm", r":2: responses\[1\] must be a string \(got number\)"),
    ({"prompt": [{"role": "user"}], "responses": ["a"]}, "pairrm", r":2: prompt\[0\] needs 'role' and 'content'"),
    ({"prompt": "p", "responses": ["a"]}, "verifier", ":2: field 'answer' must be a string"),
    ({"prompt": "p", "responses": ["a"], "answer": "1", "task": "nope"}, "verifier", ":2: field 'task'"),
])
def test_bad_rows_name_file_line_and_field(row, kind, match, tmp_path, capsys, pairrm_dir):
    first = {**ROWS[0], "answer": "4", "task": "arithmetic"}
    data = write(tmp_path / "c.jsonl", [first, row])
    model = ["--model", str(pairrm_dir)] if kind == "pairrm" else []
    assert main(["judge", "--judge", kind, *model, "--data", str(data), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert str(data) in err and "Traceback" not in err
    assert re.search(match, err), err
    assert not (tmp_path / "o.jsonl").exists()


def test_output_must_not_be_the_input(tmp_path, capsys, pairrm_dir):
    data = write(tmp_path / "c.jsonl", ROWS[:1])
    assert main(["judge", "--judge", "pairrm", "--model", str(pairrm_dir), "--data", str(data), "--output", str(data)]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_a_setting_of_another_kind_is_refused(tmp_path, capsys):
    data = write(tmp_path / "c.jsonl", ROWS[:1])
    assert main(["judge", "--judge", "reward", "--model", "m", "--data", str(data), "--output", str(tmp_path / "o"),
                 "--pairrm-mode", "sppo"]) == 2
    assert "pairrm_mode is a setting of judge kind 'pairrm'" in capsys.readouterr().err
