"""One rendering rule everywhere (issue 23, item 2): with a chat template, every stage renders through it.

String prompt/completion pairs used to be concatenated as raw text for SFT and DPO while the same model was
sampled from template-rendered prompts. Now sft, train, generate (and so sgd and selfplay) and eval render
through the model's chat template; `chat_template: false` keeps a source plain through every later file; a
tokenizer without a template renders plain strings as they are and refuses conversations at --dry-run.
"""

from __future__ import annotations

import json
import shutil

import pytest

from podium.cli import main
from podium.data.chat import IGNORE, tokenize_sft
from podium.data.rendering import chat_prompt, chat_record
from podium.errors import ConfigError
from podium.files import read_jsonl
from podium.models.io import load_tokenizer
from podium.stages import run_stage


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def no_template_dir(tiny_dir, tmp_path_factory):
    """The tiny model with its tokenizer's chat template taken away (a base model's tokenizer)."""
    folder = tmp_path_factory.mktemp("base") / "model"
    shutil.copytree(tiny_dir, folder)
    (folder / "chat_template.jinja").unlink()
    return folder


def trained_text(tok, record):
    ex = tokenize_sft(record, tok)
    return tok.decode(ex["input_ids"]), tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE])


def test_string_records_render_with_the_template_and_plain_without(tiny_dir, no_template_dir):
    record = {"prompt": "Q: 2+2?", "completion": "4"}
    templated = load_tokenizer(tiny_dir)
    assert trained_text(templated, chat_record(record, templated)) == ("<|user|>Q: 2+2?<|end|><|assistant|>4<|end|>",
                                                                       "4<|end|>")
    plain = load_tokenizer(no_template_dir)
    assert plain.chat_template is None
    assert trained_text(plain, chat_record(record, plain)) == ("Q: 2+2?4<|end|>", "4<|end|>")  # TRL's standard format
    opted_out = {**record, "chat_template": False}
    assert chat_record(opted_out, templated) == opted_out
    with pytest.raises(ConfigError, match="stage 'sft': d.jsonl:3: this record is a conversation"):
        chat_record({"messages": [{"role": "user", "content": "hi"}], "_source": "d.jsonl:3"}, plain, "sft")
    assert chat_prompt({"prompt": "hi"}, templated) == [{"role": "user", "content": "hi"}]
    assert chat_prompt({"prompt": [{"role": "user", "content": "hi"}], "chat_template": False}, templated) == "hi\n\n"


def test_sft_and_train_stages_render_string_pairs_with_the_template(tiny_dir, tmp_path, monkeypatch):
    """The probe: Rhea's SFT and Smaug's DPOP string data trained an instruct model on raw text."""
    import podium.training.preference_inputs as preference_inputs
    import podium.training.sft as sft

    seen = {}
    real_sft, real_pairs = sft.tokenize_dataset, preference_inputs.tokenize_pairs
    monkeypatch.setattr(sft, "tokenize_dataset", lambda rows, *a: seen.setdefault("sft", rows) and real_sft(rows, *a))
    monkeypatch.setattr(preference_inputs, "tokenize_pairs",
                        lambda rows, *a: seen.setdefault("train", rows) and real_pairs(rows, *a))
    data = write(tmp_path / "sft.jsonl", [{"prompt": "Q: 2+2?", "completion": "4"}] * 4)
    pairs = write(tmp_path / "pairs.jsonl", [{"prompt": "Q: 2+2?", "chosen": "4", "rejected": "5"}] * 4)
    run_stage("sft", {"model": str(tiny_dir), "data": str(data), "max_steps": 1, "batch_size": 2}, tmp_path / "s")
    run_stage("train", {"model": str(tiny_dir), "data": str(pairs), "max_steps": 1, "batch_size": 2,
                        "reference_cache_dir": str(tmp_path / "cache")}, tmp_path / "t")
    assert seen["sft"][0]["prompt"] == [{"role": "user", "content": "Q: 2+2?"}]
    assert seen["sft"][0]["completion"] == [{"role": "assistant", "content": "4"}]
    assert seen["train"][0]["chosen"] == [{"role": "assistant", "content": "4"}]


def test_generate_renders_string_prompts_and_keeps_plain_ones(tiny_dir, tmp_path):
    prompts = write(tmp_path / "p.jsonl", [{"prompt": "What is 1 + 1?"},
                                           {"prompt": "Continue: once upon", "chat_template": False}])
    run_stage("generate", {"model": str(tiny_dir), "prompts": str(prompts), "max_new_tokens": 2}, tmp_path / "g")
    samples = read_jsonl(tmp_path / "g" / "samples.jsonl")
    assert samples[0]["prompt"] == [{"role": "user", "content": "What is 1 + 1?"}]
    assert samples[1]["prompt"] == "Continue: once upon" and samples[1]["chat_template"] is False


def test_a_plain_source_stays_plain_through_sgd_pairs(tiny_dir, tmp_path):
    items = write(tmp_path / "items.jsonl", [{"prompt": f"What is {i} + 1?", "answer": str(i + 1), "task": "arithmetic"}
                                             for i in range(3)])
    run_stage("sgd", {"model": str(tiny_dir), "prompts": [{"path": str(items), "chat_template": False}], "num_samples": 2,
                      "max_new_tokens": 3, "temperature": 1.0}, tmp_path / "sgd")
    pairs = read_jsonl(tmp_path / "sgd" / "pairs.jsonl")
    assert pairs and all(p["chat_template"] is False and isinstance(p["prompt"], str) for p in pairs)
    assert all(isinstance(p["chosen"], str) and p["chosen"].endswith(f"= {p['answer']}") for p in pairs)


def recipe(tmp_path, model, source):
    path = tmp_path / "r.yaml"
    path.write_text(f"stages:\n  - {{name: sft, kind: sft, model: {model}, data: [{source}], max_steps: 1}}\n")
    return str(path)


def test_a_tokenizer_without_template_is_a_dry_run_error_naming_the_stage(no_template_dir, tmp_path, capsys):
    out = ["--output", str(tmp_path / "run"), "--dry-run"]
    assert main(["run", recipe(tmp_path, no_template_dir, "{task: arithmetic, count: 5}"), *out]) == 2
    err = capsys.readouterr().err
    assert "stage 'sft': " in err and "has no chat template: use a model with one, or set `chat_template: false`" in err
    assert main(["run", recipe(tmp_path, no_template_dir, "{task: arithmetic, count: 5, chat_template: false}"), *out]) == 0
    data = write(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}])
    assert main(["run", recipe(tmp_path, no_template_dir, f"{{path: {data}}}"), *out]) == 0  # plain strings need none
