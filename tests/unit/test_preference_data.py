"""Preference data: TRL 1.16 tokenisation rules, keep_start truncation, counted drops."""

from __future__ import annotations

import pytest

from podium.data.preference import read_pairs, tokenize_pairs
from podium.errors import DataError
from podium.models.tiny import build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def ids(tok, text):
    return tok(text)["input_ids"]


def test_plain_text_gets_eos_and_split_at_divergence(tok):
    """Prompt "ab", chosen "c" -> prompt ids [a, b], chosen ids [c, EOS] (char tokenizer: one id per char)."""
    (ex,), stats = tokenize_pairs([{"prompt": "ab", "chosen": "c", "rejected": "dd"}], tok, None)
    assert ex["prompt_ids"] == ids(tok, "ab")
    assert ex["chosen_ids"] == ids(tok, "c") + [tok.eos_token_id]
    assert ex["rejected_ids"] == ids(tok, "dd") + [tok.eos_token_id]
    assert stats.kept == 1 and stats.dropped == {}


def test_eos_not_doubled(tok):
    (ex,), _ = tokenize_pairs([{"prompt": "a", "chosen": "b<|end|>", "rejected": "c"}], tok, None)
    assert ex["chosen_ids"] == ids(tok, "b") + [tok.eos_token_id]


def test_conversational_uses_generation_prompt(tok):
    """<|user|>hi<|end|><|assistant|> is the prompt; the completion is "yo<|end|>" (template ends turns with EOS)."""
    row = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yo"}],
           "rejected": [{"role": "assistant", "content": "no"}]}
    (ex,), _ = tokenize_pairs([row], tok, None)
    assert ex["prompt_ids"] == ids(tok, "<|user|>hi<|end|><|assistant|>")
    assert ex["chosen_ids"] == ids(tok, "yo<|end|>")


def test_invalid_pairs_are_counted(tok):
    rows = [
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "", "rejected": "x"},
        {"prompt": "a very long prompt", "chosen": "x", "rejected": "y"},
        {"prompt": "p", "chosen": "x", "rejected": "y", "chosen_prob": 0.7, "rejected_prob": 0.2},
    ]
    examples, stats = tokenize_pairs(rows, tok, max_length=8)
    assert stats.read == 4 and stats.kept == 1
    assert stats.dropped == {"chosen_equals_rejected": 1, "empty_completion": 1, "prompt_too_long": 1}
    assert examples[0]["chosen_prob"] == 0.7 and examples[0]["index"] == 0
    assert stats.as_metrics()["pairs/dropped/prompt_too_long"] == 1.0


def test_keep_start_truncation_cuts_completion_tail(tok):
    """max_length 5, prompt "abc" (3 ids): completions keep 2 ids, "xyz<|end|>" -> "xy"; tails that become equal drop."""
    rows = [{"prompt": "abc", "chosen": "xyz", "rejected": "uvw"}, {"prompt": "abc", "chosen": "xy1", "rejected": "xy2"}]
    examples, stats = tokenize_pairs(rows, tok, max_length=5)
    assert examples[0]["chosen_ids"] == ids(tok, "xy") and examples[0]["rejected_ids"] == ids(tok, "uv")
    assert stats.truncated == 2 and stats.dropped == {"chosen_equals_rejected": 1}


def test_read_errors_name_file_and_line(tmp_path, tok):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: missing field 'rejected'"):
        read_pairs(path)
