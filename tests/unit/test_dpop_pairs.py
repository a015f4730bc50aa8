"""Smaug-style DPOP pair builders: one corrupted number; correct vs each wrong option."""

import random

import pytest

from podium.pairs.dpop import (
    WORKED_NUMBER,
    corrupt_one_number,
    find_numbers,
    multiple_choice_pairs,
    number_corruption_pair,
    perturb_number,
)

ANSWER = (
    "Tom has 12 apples and buys 3.5 kg more for 1,200 cents. 12 + 30 = 42. On the 2nd day he has 42.\n#### 42"
)


def test_find_numbers_skips_ordinals_and_keeps_styles():
    assert [m.group(0) for m in find_numbers(ANSWER)] == ["12", "3.5", "1,200", "12", "30", "42", "42", "42"]


@pytest.mark.parametrize("token", ["24", "0", "3.75", "0.05", "1,000", "7"])
def test_perturb_number_differs_and_keeps_style(token):
    for seed in range(30):
        new = perturb_number(token, random.Random(seed))
        assert new != token
        assert ("." in new) == ("." in token)
        if "." in token:
            assert len(new.split(".")[1]) == len(token.split(".")[1])
        value, old = float(new.replace(",", "")), float(token.replace(",", ""))
        unit = 10 ** -len(token.partition(".")[2])
        assert value >= 0 and 1 * unit - 1e-9 <= abs(value - old) <= 9 * unit + 1e-9


def test_perturb_worked_example():
    """'0' cannot go below zero, so the step is added: '0' -> a number in 1..9."""
    assert all(1 <= int(perturb_number("0", random.Random(s))) <= 9 for s in range(20))


def test_corrupt_changes_exactly_one_number():
    for seed in range(40):
        out = corrupt_one_number(ANSWER, seed)
        before, after = find_numbers(ANSWER), find_numbers(out)
        assert len(before) == len(after)
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a.group(0) != b.group(0)]
        assert len(changed) == 1
        # Text outside the numbers is untouched.
        assert WORKED_NUMBER.sub("#", out) == WORKED_NUMBER.sub("#", ANSWER)


def test_corrupt_is_seeded_and_varies():
    assert corrupt_one_number(ANSWER, 3) == corrupt_one_number(ANSWER, 3)
    assert len({corrupt_one_number(ANSWER, s) for s in range(20)}) > 5


def test_exclude_final_keeps_the_last_number():
    for seed in range(20):
        out = corrupt_one_number(ANSWER, seed, exclude_final=True)
        assert out.endswith("#### 42")
    assert corrupt_one_number("The answer is 7", 0, exclude_final=True) is None


def test_number_corruption_pair():
    pair = number_corruption_pair("How many?", ANSWER, seed=1)
    assert set(pair) == {"prompt", "chosen", "rejected"}
    assert pair["prompt"] == "How many?" and pair["chosen"] == ANSWER and pair["rejected"] != ANSWER
    assert number_corruption_pair("q", "no digits here", seed=0) is None


def test_multiple_choice_pairs_each_wrong_option():
    """4 options, answer C: pairs (C, A), (C, B), (C, D) in option order."""
    pairs = multiple_choice_pairs("Q?", ["red", "blue", "green", "pink"], "C")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [
        ("green", "red"),
        ("green", "blue"),
        ("green", "pink"),
    ]
    assert all(p["prompt"] == "Q?" for p in pairs)
    assert multiple_choice_pairs("Q?", ["red", "blue", "green", "pink"], 2) == pairs
    assert multiple_choice_pairs("Q?", ["red", "blue", "green", "pink"], "green") == pairs


def test_multiple_choice_template_duplicates_and_errors():
    pairs = multiple_choice_pairs("Q?", ["1", "2", "1"], 1, template="The answer is {label}. {text}")
    assert [p["rejected"] for p in pairs] == ["The answer is A. 1", "The answer is C. 1"]
    assert pairs[0]["chosen"] == "The answer is B. 2"
    assert len(multiple_choice_pairs("Q?", ["x", "y", "x", "y"], 0)) == 1
    with pytest.raises(ValueError):
        multiple_choice_pairs("Q?", ["x", "y"], "E")
    with pytest.raises(ValueError):
        multiple_choice_pairs("Q?", ["x"], 0)


def test_pairs_stage_both_builders(tmp_path):
    from podium.files import read_jsonl, write_jsonl
    from podium.stages import run_stage

    math = write_jsonl(tmp_path / "math.jsonl", [
        {"query": "Tom has 3 apples and buys 4. How many?", "response": "3 + 4 = 7. The answer is 7"},
        {"query": "No numbers here?", "response": "none"},
    ])
    m = run_stage("pairs", {"data": str(math), "prompt_field": "query"}, tmp_path / "a")
    rows = read_jsonl(tmp_path / "a" / "pairs.jsonl")
    assert m == {"rows": 2, "pairs": 1, "rows_without_pair": 1}
    assert rows[0]["chosen"] == "3 + 4 = 7. The answer is 7" and rows[0]["rejected"] != rows[0]["chosen"]
    mc = write_jsonl(tmp_path / "mc.jsonl", [{"prompt": "Sky?", "choices": ["red", "blue", "green"], "response": "B"}])
    m = run_stage("pairs", {"data": str(mc), "builder": "multiple_choice", "template": "{label}. {text}"}, tmp_path / "b")
    rows = read_jsonl(tmp_path / "b" / "pairs.jsonl")
    assert m["pairs"] == 2 and {r["rejected"] for r in rows} == {"A. red", "C. green"}
    assert all(r["chosen"] == "B. blue" for r in rows)
    task = run_stage("pairs", {"data": [{"task": "arithmetic", "count": 5}]}, tmp_path / "c")
    assert task["pairs"] == 5
