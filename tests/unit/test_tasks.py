import pytest

from podium.errors import ConfigError
from podium.tasks import get_task
from podium.tasks.base import last_number


@pytest.mark.parametrize(
    "response,answer,ok",
    [
        ("47 + 38 = 85", "85", True),
        ("The answer is 85.", "85", True),
        ("85", "85", True),
        ("  = 85\n", "85", True),
        ("1,234", "1234", True),
        ("5 - 43 = -38", "-38", True),
        ("5 - 43 = 38", "-38", False),
        ("85.0", "85", True),
        ("8.5", "85", False),
        ("", "85", False),
        ("I don't know", "85", False),
        ("85 or maybe 86", "85", False),  # the last number is the answer
    ],
)
def test_arithmetic_checker(response, answer, ok):
    assert get_task("arithmetic").check(response, answer) is ok


def test_last_number():
    assert last_number("x = 12, y = 3,000.50") == "3000.5"
    assert last_number("none") is None


def test_items_deterministic_and_splits_disjoint():
    t = get_task("arithmetic")
    assert t.items(50, "train", seed=3) == t.items(50, "train", seed=3)
    assert t.items(50, "train", seed=3) != t.items(50, "train", seed=4)
    train = {i["prompt"] for i in t.items(3000, "train", seed=0, max_digits=2)}
    test = t.items(300, "test", seed=0, max_digits=2)
    assert not train & {i["prompt"] for i in test}
    assert len({i["prompt"] for i in test}) == 300  # test items are distinct


def test_answers_are_right_and_formatted():
    t = get_task("arithmetic")
    for it in t.items(100, "train", seed=1, max_digits=3, ops="+-*"):
        expr = it["prompt"].removeprefix("What is ").rstrip("?")
        assert str(eval(expr)) == it["answer"]
        assert t.check(t.format_answer(it), it["answer"])


def test_difficulty_errors():
    t = get_task("arithmetic")
    with pytest.raises(ConfigError, match="ops"):
        t.items(1, ops="/")
    with pytest.raises(ConfigError, match="distinct"):
        t.items(500, "test", max_digits=1, ops="+")  # only 100 sums exist
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("chess")
