"""Pairs built from a built-in task keep its chat prompt (the format the SFT model learned)."""

from podium.files import read_jsonl
from podium.stages import run_stage


def test_task_pairs_are_conversational(tmp_path):
    run_stage("pairs", {"builder": "corrupt_number", "data": [{"task": "arithmetic", "count": 5}]}, tmp_path)
    rows = read_jsonl(tmp_path / "pairs.jsonl")
    assert len(rows) == 5
    for r in rows:
        assert r["prompt"] == [{"role": "user", "content": r["prompt"][0]["content"]}]
        assert r["prompt"][0]["content"].startswith("What is ")
        (chosen,), (rejected,) = r["chosen"], r["rejected"]
        assert chosen["role"] == rejected["role"] == "assistant" and chosen["content"] != rejected["content"]
