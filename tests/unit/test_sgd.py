import pytest

from podium.errors import DataError
from podium.selfplay.sgd import build_sgd_pairs


def samples():
    return [
        {"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "answer": "5", "task": "arithmetic",
         "responses": ["2 + 3 = 5", "2 + 3 = 6", "2 + 3 = 6", "2 + 3 = 7"], "logps": [-0.1, -0.5, -0.5, -0.9]},
        {"prompt": "What is 1 + 1?", "answer": "2", "task": "arithmetic",
         "responses": ["1 + 1 = 2", "1 + 1 = 2"], "logps": [-0.2, -0.3]},
    ]


def test_pairs_gold_chosen_failed_rejected():
    pairs, c = build_sgd_pairs(samples(), pairs_per_prompt=5)
    assert c == {"prompts": 2, "samples": 6, "correct": 3, "pairs": 2, "dropped_duplicate": 1,
                 "dropped_high_logp": 0, "prompts_all_correct": 1}
    assert {p["rejected"][0]["content"] for p in pairs} == {"2 + 3 = 6", "2 + 3 = 7"}
    assert all(p["chosen"] == [{"role": "assistant", "content": "2 + 3 = 5"}] for p in pairs)
    assert pairs[0]["prompt"] == [{"role": "user", "content": "What is 2 + 3?"}]


def test_below_mean_logp_selection():
    # mean of all 6 logps = -2.5 / 6 = -0.4167: wrong answers at -0.5, -0.5, -0.9 are below it.
    pairs, c = build_sgd_pairs(samples(), pairs_per_prompt=5, select="below_mean_logp", dedupe=False)
    assert c["pairs"] == 3 and c["dropped_high_logp"] == 0
    s = samples()
    s[0]["logps"] = [-0.1, -0.2, -0.2, -0.9]  # mean -0.25: only "= 7" (-0.9) is below
    pairs, c = build_sgd_pairs(s, pairs_per_prompt=5, select="below_mean_logp")
    assert [p["rejected"][0]["content"] for p in pairs] == ["2 + 3 = 7"] and c["dropped_high_logp"] == 2


def test_pairs_per_prompt_and_missing_logps():
    pairs, _ = build_sgd_pairs(samples(), pairs_per_prompt=1)
    assert len(pairs) == 1
    s = samples()
    for x in s:
        del x["logps"]
    with pytest.raises(DataError, match="below_mean_logp needs"):
        build_sgd_pairs(s, select="below_mean_logp")


def test_sgd_stage_end_to_end(tiny_dir, tmp_path):
    import json

    from podium.files import read_jsonl
    from podium.stages import run_stage

    m = run_stage("sgd", {"model": str(tiny_dir), "task": "arithmetic", "count": 6, "num_samples": 3,
                          "max_new_tokens": 8, "pairs_per_prompt": 2, "select": "below_mean_logp"}, tmp_path)
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert m["prompts"] == 6 and m["samples"] == 18 and m["pairs"] == len(pairs) > 0
    assert m["correct"] + m["dropped_high_logp"] + m["dropped_duplicate"] + len(pairs) <= 18
    assert json.loads((tmp_path / "counts.json").read_text())["pairs"] == len(pairs)
    p = pairs[0]
    assert p["chosen"][0]["content"].endswith("= " + p["answer"]) and p["rejected"] != p["chosen"]
