"""Data readers: clear errors and counted truncation instead of tracebacks or silent loss (issue 13, items 7-8)."""

from __future__ import annotations

import json
import logging

import pytest

from podium.data.chat import tokenize_sft
from podium.data.mixture import build_mixture
from podium.data.preference import read_pairs, tokenize_pairs
from podium.errors import DataError
from podium.files import read_jsonl
from podium.models.tiny import build_tokenizer
from podium.training.sft import tokenize_dataset

TOK = build_tokenizer()


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- item 7: SFT truncation is counted and reported, never silent -------------------------------------

def long_rows(n=40):
    return [{"prompt": f"Q{i}:", "completion": " " + " ".join(["word"] * 60), "_source": f"d.jsonl:{i + 1}"}
            for i in range(n)]


def test_sft_truncation_is_counted():
    """The probe: all 40 of 40 completions lost their tail and EOS, and nothing said so."""
    examples, dropped, truncated = tokenize_dataset(long_rows(), TOK, max_length=24)
    assert (len(examples), dropped, truncated) == (40, 0, 40)
    assert all(len(e["input_ids"]) == 24 for e in examples)
    assert all(TOK.eos_token_id not in e["input_ids"] for e in examples)  # what the count warns about
    _, _, none = tokenize_dataset(long_rows(), TOK, max_length=4096)
    assert none == 0


def test_cut_prompt_is_not_counted_as_truncated_completion():
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                          {"role": "user", "content": " ".join(["x"] * 80)}]}]
    _, _, truncated = tokenize_dataset(rows, TOK, max_length=24)  # only the last user turn is cut
    assert truncated == 0


def test_sft_stage_reports_truncation(tmp_path, tiny_dir, caplog):
    from podium.stages import run_stage

    data = write_rows(tmp_path / "d.jsonl", [{k: v for k, v in r.items() if k != "_source"} for r in long_rows(8)])
    with caplog.at_level(logging.WARNING, logger="podium"):
        result = run_stage("sft", {"model": str(tiny_dir), "data": str(data), "max_length": 24, "batch_size": 4,
                                   "max_steps": 1}, tmp_path / "sft")
    counts = json.loads((tmp_path / "sft" / "data_counts.json").read_text())
    assert counts["truncated"] == 8 and result["examples/truncated"] == 8
    assert "8 of 8 completions truncated to max_length=24" in caplog.text


# --- item 7: malformed messages ---------------------------------------------------------------------

@pytest.mark.parametrize("record,field", [
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]}, r"messages\[1\].content"),
    ({"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": None}]},
     r"completion\[0\].content"),
    ({"prompt": "hi", "completion": None}, "field 'completion'"),
    ({"prompt": None, "completion": "x"}, "field 'prompt'"),
    ({"messages": [{"role": "user", "content": ["a", "b"]}]}, r"messages\[0\].content"),
])
def test_non_string_content_is_a_data_error(record, field):
    """The probe: `content: null` trained as an empty answer."""
    with pytest.raises(DataError, match=rf"d.jsonl:7: {field}.*(null|list)"):
        tokenize_sft({**record, "_source": "d.jsonl:7"}, TOK)


def test_null_content_in_a_file_names_file_and_line(tmp_path):
    p = write_rows(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"},
                                         {"messages": [{"role": "user", "content": "q"},
                                                       {"role": "assistant", "content": None}]}])
    rows, _ = build_mixture(str(p), shuffle=False)
    tokenize_sft(rows[0], TOK)
    with pytest.raises(DataError, match=rf"{p}:2: messages\[1\].content must be a string \(got null\)"):
        tokenize_sft(rows[1], TOK)


def test_null_content_in_pairs_is_a_data_error(tmp_path):
    p = write_rows(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": [{"role": "assistant", "content": None}],
                                          "rejected": "no"}])
    with pytest.raises(DataError, match=rf"{p}:1: chosen\[0\].content must be a string \(got null\)"):
        read_pairs(str(p))


def test_string_prompt_with_message_list_completions_is_accepted():
    """The probe: a string prompt with a message-list `chosen` raised AttributeError. Mixed records are
    conversational, the string prompt one user message (as the SFT reader already did)."""
    mixed = {"prompt": "What is 2+2?", "chosen": [{"role": "assistant", "content": "4"}],
             "rejected": [{"role": "assistant", "content": "5"}]}
    same = {"prompt": [{"role": "user", "content": "What is 2+2?"}], "chosen": mixed["chosen"],
            "rejected": mixed["rejected"]}
    reverse = {"prompt": same["prompt"], "chosen": "4", "rejected": "5"}
    (a, b, c), stats = tokenize_pairs([mixed, same, reverse], TOK, 64)
    assert stats.kept == 3
    for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert a[key] == b[key] == c[key]


# --- item 8: tracebacks that are now errors ---------------------------------------------------------

def test_non_utf8_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n')
    with pytest.raises(DataError, match=rf"{p}:2: not UTF-8 text \(byte 0xe9 at column 16\)"):
        read_jsonl(p)
    with pytest.raises(DataError, match=rf"{p}:2: not UTF-8"):
        build_mixture(str(p))


def test_folder_named_like_a_jsonl_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_rows(data / "a.jsonl", [{"prompt": "a", "completion": "b"}])
    (data / "x.jsonl").mkdir()
    with pytest.raises(DataError, match=rf"{data / 'x.jsonl'}: is a folder, not a JSONL file"):
        build_mixture(str(data))
    with pytest.raises(DataError, match="is a folder"):
        read_jsonl(data / "x.jsonl")


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "completion": "b"}\n')
    assert read_jsonl(p)[0]["prompt"] == "a"


def test_empty_message_list_completion_is_dropped_not_an_error(tmp_path):
    p = write_rows(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": [], "rejected": "no"},
                                         {"prompt": "q", "chosen": "yes", "rejected": "no"}])
    _, stats = tokenize_pairs(read_pairs(str(p)), TOK, 64)
    assert stats.kept == 1 and stats.dropped == {"empty_completion": 1}
