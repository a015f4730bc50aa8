"""Every data-consuming stage of the five full-scale recipes runs on its datasets' published schemas (issue 23,
item 7): the recipes pointed at local copies of their datasets and at the tiny model, a few training steps each
(tests/recipe_fixtures.py); about 10 s on 2 cores. What they render is tests/unit/test_full_recipes_preview.py.
"""

from __future__ import annotations

import json

import pytest
from tests.recipe_fixtures import local_recipe

from podium.files import read_jsonl
from podium.pipeline import run_recipe
from podium.stages import run_stage


@pytest.fixture(scope="module")
def reward_model(hub_data, tiny_dir, tmp_path_factory):
    """The self-play judge of the SPPO recipes, offline: a Bradley-Terry head on the tiny model, trained on
    UltraFeedback binarised as HuggingFaceH4/ultrafeedback_binarized (the recipe's own prompt source)."""
    out = tmp_path_factory.mktemp("rm") / "rm"
    metrics = run_stage("train", {"objective": "reward", "model": str(tiny_dir), "max_steps": 2, "batch_size": 1,
                                  "data": [{"path": hub_data["openbmb/UltraFeedback"], "format": "ultrafeedback"}]}, out)
    assert metrics["pairs/read"] == 1.0  # one of three rows: a TruthfulQA prompt and a tie are left out
    return str(out)


def run(name, hub_data, tiny_dir, tmp_path, reward_model=None) -> tuple[dict, object]:
    recipe = local_recipe(name, hub_data, tiny_dir, tmp_path, reward_model=reward_model)
    report = run_recipe(str(recipe), output=str(tmp_path / "run"), show_progress=False)
    return {s["name"]: s["metrics"] for s in report["stages"]}, tmp_path / "run"


def test_rhea(hub_data, tiny_dir, tmp_path):
    metrics, run_dir = run("rhea-sgd-dpo", hub_data, tiny_dir, tmp_path)
    counts = json.loads((run_dir / "sft" / "data_counts.json").read_text())
    assert len(counts["sources"]) == 10 and counts["examples"] == 26
    assert counts["skipped"] == {hub_data["Hello-SimpleAI/HC3"]: {"empty completion (chatgpt_answers[0])": 1}}
    assert metrics["sft"]["steps"] == 2 and metrics["dpo"]["steps"] == 2
    prompts = read_jsonl(run_dir / "sgd" / "prompts.jsonl")
    assert [(p["answer"], p["task"]) for p in prompts] == [("72", "arithmetic"), ("10", "arithmetic"), ("3,600", "arithmetic")]
    pairs = read_jsonl(run_dir / "sgd" / "pairs.jsonl")
    assert pairs and all(p["chosen"][0]["content"].endswith(f"#### {p['answer']}") for p in pairs)


def test_smaug(hub_data, tiny_dir, tmp_path):
    metrics, run_dir = run("smaug-dpop", hub_data, tiny_dir, tmp_path)
    assert metrics["arc_pairs"]["pairs"] == 3 + 3 + 2 and metrics["metamath_pairs"]["pairs"] == 2
    assert metrics["dpop"]["pairs/kept"] == 2 + 8 + 2 and metrics["dpop"]["steps"] == 2


def test_sakura(hub_data, tiny_dir, tmp_path):
    metrics, _ = run("sakura-solar", hub_data, tiny_dir, tmp_path)
    assert metrics["dpo_v1"]["pairs/kept"] == 2 and metrics["dpo_v1"]["steps"] == 2


@pytest.mark.parametrize("name", ["sppo-gemma-2-9b", "sppo-gpm-llama-3-8b"])
def test_sppo(hub_data, tiny_dir, tmp_path, reward_model, name):
    metrics, run_dir = run(name, hub_data, tiny_dir, tmp_path, reward_model=reward_model)
    assert metrics["sppo"]["iter1/pairs"] == 1
    # Intermediate files carry what the pipeline needs, not UltraFeedback's four completions.
    for path in (run_dir / "sppo" / "iter1" / "prompts.jsonl", run_dir / "sppo" / "eval_prompts.jsonl"):
        assert [set(r) - {"_source"} for r in read_jsonl(path)] == [{"prompt"}]
    sample = read_jsonl(run_dir / "sppo" / "iter1" / "generate" / "samples.jsonl")[0]
    assert sample["prompt"][0]["content"].startswith("UF-PROMPT") and "completions" not in sample
