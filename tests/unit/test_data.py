import json

import pytest
import torch

from podium.data.chat import IGNORE, tokenize_sft
from podium.data.collate import pack_batch, pack_rows, pad_batch
from podium.data.mixture import build_mixture
from podium.errors import DataError
from podium.files import read_jsonl, write_jsonl
from podium.models.tiny import build_tiny_model, build_tokenizer
from podium.training.sft import sft_objective

TOK = build_tokenizer()


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n')
    with pytest.raises(DataError, match=r"d.jsonl:2: invalid JSON"):
        read_jsonl(p)
    p.write_text('{"prompt": "a"}\n[1]\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: expected a JSON object"):
        read_jsonl(p)


def test_write_jsonl_is_atomic_roundtrip(tmp_path):
    rows = [{"a": i, "_source": "x"} for i in range(3)]
    p = write_jsonl(tmp_path / "o.jsonl", rows)
    assert [r["a"] for r in read_jsonl(p)] == [0, 1, 2]
    assert not list(tmp_path.glob("*.tmp"))


def test_mask_messages_no_prompt_token_in_loss():
    rec = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"},
                        {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"},
                        {"role": "assistant", "content": "6"}]}
    ex = tokenize_sft(rec, TOK)
    in_loss = TOK.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE])
    # Exactly the assistant contents and their end-of-turn tokens, nothing of the prompts.
    assert in_loss == "4<|end|>6<|end|>"


def test_mask_plain_prompt_completion_gets_eos():
    ex = tokenize_sft({"prompt": "Q: 1+1? A:", "completion": " 2"}, TOK)
    assert ex["input_ids"][-1] == TOK.eos_token_id
    assert TOK.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE]) == " 2<|end|>"


def test_mask_conversational_prompt_completion():
    ex = tokenize_sft({"prompt": [{"role": "user", "content": "hi"}],
                       "completion": [{"role": "assistant", "content": "yo"}]}, TOK)
    assert TOK.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE]) == "yo<|end|>"


def test_bad_record():
    with pytest.raises(DataError, match="f.jsonl:3"):
        tokenize_sft({"text": "x", "_source": "f.jsonl:3"}, TOK)


def test_mixture_counts_and_seed(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"a{i}", "completion": "x"} for i in range(50)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"b{i}", "completion": "y"} for i in range(20)])
    data = [{"path": str(a), "count": 30}, {"path": str(b), "count": 5}, {"task": "arithmetic", "count": 7}]
    rows, counts = build_mixture(data, seed=1)
    assert counts == {str(a): 30, str(b): 5, "task:arithmetic": 7} and len(rows) == 42
    assert sum(r["prompt"].startswith("a") for r in rows if isinstance(r["prompt"], str)) == 30
    again, _ = build_mixture(data, seed=1)
    other, _ = build_mixture(data, seed=2)
    assert [json.dumps(r) for r in rows] == [json.dumps(r) for r in again]
    assert [json.dumps(r) for r in rows] != [json.dumps(r) for r in other]
    assert len({r["prompt"] for r in rows if isinstance(r["prompt"], str)}) == 35  # no row drawn twice


def test_mixture_from_saved_hf_dataset_and_columns(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)])
    ds.save_to_disk(str(tmp_path / "hf"))
    rows, counts = build_mixture([{"path": str(tmp_path / "hf"), "count": 4,
                                   "columns": {"prompt": "instruction", "completion": "output"}}])
    assert counts == {str(tmp_path / "hf"): 4}
    assert all(r["prompt"].startswith("q") and r["completion"].startswith("a") for r in rows)


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        build_mixture(str(tmp_path / "e.jsonl"))


def test_unreachable_hub_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="could not load dataset 'nobody/nothing-here'"):
        build_mixture("nobody/nothing-here")


def test_packed_forward_equals_padded_forward():
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    model.eval()
    exs = [tokenize_sft({"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}]}, tok)
           for p, c in [("What is 1 + 2?", "3"), ("Hi", "hello there"), ("What is 10 - 7?", "10 - 7 = 3")]]
    padded, packed = pad_batch(exs, tok.pad_token_id), pack_batch(exs, tok.pad_token_id)
    assert padded["count"] == packed["count"]
    with torch.no_grad():
        a, _ = sft_objective(model, padded)
        b, _ = sft_objective(model, packed)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_pack_rows_first_fit_decreasing():
    """Worked example: lengths 5, 3, 8, 2, 4 into rows of 8. Longest first: 8 opens row 0; 5 opens row 1
    (3 left); 4 does not fit there and opens row 2 (4 left); 3 fills row 1; 2 goes to row 2."""
    assert pack_rows([5, 3, 8, 2, 4], 8) == [[2], [0, 1], [4, 3]]


def test_packed_rows_are_no_longer_than_the_longest_example():
    tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)[1]
    exs = [tokenize_sft({"prompt": "q" * p, "completion": "a" * c}, tok) for p, c in [(9, 3), (2, 2), (5, 1)]]
    packed, padded = pack_batch(exs, tok.pad_token_id), pad_batch(exs, tok.pad_token_id)
    longest = max(len(e["input_ids"]) for e in exs)  # 13: prompt 9 + completion 3 + EOS
    assert packed["input_ids"].shape == (2, longest)  # 13 | 7 + 5 (+ 1 padding)
    assert packed["position_ids"][1].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 0]
    assert packed["token_mask"].sum() == packed["num_tokens"] == padded["num_tokens"] == 13 + 7 + 5
    assert packed["count"] == padded["count"] == packed["targets"].numel() == int(packed["pred_mask"].sum())
    # the padding run and each example's first token carry no label; the same tokens are predicted as padded
    assert packed["labels"][1, 12] == IGNORE and packed["labels"][1, 7] == IGNORE
    assert sorted(packed["targets"].tolist()) == sorted(padded["targets"].tolist())
