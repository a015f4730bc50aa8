"""Worked examples for lm-eval's multiple-choice metrics and its context/continuation split."""

import pytest

from podium.evaluation.multiple_choice import choice_metrics, encode_pair
from podium.models.tiny import build_tokenizer


def test_acc_norm_divides_by_choice_length():
    """lls = [-2, -3], choices "a" (1 char) and "bbbbbb" (6 chars), gold = 1.

    acc: argmax(-2, -3) = 0 != 1 -> 0.  acc_norm: (-2/1, -3/6) = (-2, -0.5) -> argmax 1 -> 1.
    """
    m = choice_metrics([-2.0, -3.0], ["a", "bbbbbb"], gold=1)
    assert m == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0}


def test_acc_norm_counts_characters_acc_bytes_counts_utf8_bytes():
    """choices "é" (1 char, 2 bytes) and "ab" (2 chars, 2 bytes); lls = [-1.2, -2.0], gold = 0.

    acc_norm: (-1.2/1, -2.0/2) = (-1.2, -1.0) -> argmax 1 -> 0.
    acc_bytes: (-1.2/2, -2.0/2) = (-0.6, -1.0) -> argmax 0 -> 1.   acc: argmax 0 -> 1.
    """
    assert choice_metrics([-1.2, -2.0], ["é", "ab"], gold=0) == {"acc": 1.0, "acc_norm": 0.0, "acc_bytes": 1.0}


def test_ties_go_to_the_first_choice_like_numpy():
    assert choice_metrics([-1.0, -1.0], ["x", "y"], gold=0)["acc"] == 1.0
    assert choice_metrics([-1.0, -1.0], ["x", "y"], gold=1)["acc"] == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        choice_metrics([-1.0], ["x", "y"], gold=0)


def test_encode_pair_moves_trailing_space_to_continuation():
    tok = build_tokenizer()
    ctx, cont = encode_pair(tok, "Q: 1\nA: ", "2")
    assert tok.decode(ctx) == "Q: 1\nA:"
    assert tok.decode(cont) == " 2"
