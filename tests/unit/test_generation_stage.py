"""The `generate` stage and `podium generate` CLI write valid samples records."""

import json

import pytest

from podium.cli import main as podium_main
from podium.errors import DataError
from podium.models.io import save_model
from podium.models.tiny import build_tiny_model
from podium.stages import get_stage, run_stage


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    return str(save_model(model, tok, tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def prompts_file(tmp_path):
    rows = [
        {"prompt": "2+2=", "answer": "4", "task": "add"},
        {"prompt": [{"role": "user", "content": "3+5?"}], "answer": "8", "task": "add"},
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read(path):
    return [json.loads(line) for line in open(path)]


def test_stage_writes_samples_records(tmp_path, model_dir, prompts_file):
    assert get_stage("generate").outputs == {"samples": "samples.jsonl"}
    cfg = {
        "model": model_dir,
        "prompts": prompts_file,
        "n": 3,
        "temperature": 0.8,
        "max_new_tokens": 8,
        "seed": 4,
        "logps": True,
    }
    metrics = run_stage("generate", cfg, tmp_path / "gen")
    records = read(tmp_path / "gen" / "samples.jsonl")
    assert [r["answer"] for r in records] == ["4", "8"]
    assert records[1]["prompt"] == [{"role": "user", "content": "3+5?"}]
    for r in records:
        assert len(r["responses"]) == 3 and all(isinstance(x, str) for x in r["responses"])
        assert len(r["logps"]) == 3 and all(lp < 0 for lp in r["logps"])
        assert r["task"] == "add"
        assert r["generator"] == {
            "model": model_dir,
            "backend": "transformers",
            "n": 3,
            "temperature": 0.8,
            "top_p": 1.0,
            "top_k": 0,
            "max_new_tokens": 8,
            "seed": 4,
        }
    assert metrics["prompts"] == 2 and metrics["samples"] == 6
    assert 0 < metrics["generated_tokens"] <= 6 * 8
    # Same config, same seed: same file.
    run_stage("generate", cfg, tmp_path / "again")
    assert read(tmp_path / "again" / "samples.jsonl") == records


def test_stage_rejects_bad_prompt(tmp_path, model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"question": "no prompt"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'prompt'"):
        run_stage("generate", {"model": model_dir, "prompts": str(bad)}, tmp_path / "out")


def test_cli_overrides_and_errors(tmp_path, model_dir, prompts_file, capsys):
    config = tmp_path / "gen.yaml"
    config.write_text(
        f"model: {model_dir}\nprompts: {prompts_file}\nn: 2\nmax_new_tokens: 4\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    assert podium_main(["generate", str(config), "temperature=0", "limit=1"]) == 0
    records = read(tmp_path / "out" / "samples.jsonl")
    assert len(records) == 1 and records[0]["generator"]["temperature"] == 0
    assert records[0]["responses"][0] == records[0]["responses"][1]  # greedy
    assert "logps" not in records[0]

    config.write_text(f"model: {model_dir}\nprompts: {prompts_file}\ntemprature: 0.5\noutput_dir: x\n")
    assert podium_main(["generate", str(config)]) == 2
    assert "gen.yaml:3: generate: unknown key 'temprature'" in capsys.readouterr().err
