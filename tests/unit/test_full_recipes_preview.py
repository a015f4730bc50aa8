"""`podium preview` of every data stage of the five full-scale recipes, on their datasets' published schemas
(issue 23, items 3, 4 and 7).

Each recipe is pointed at local copies of its datasets (tests/hub_fixtures.py) and the tiny model
(tests/recipe_fixtures.py); what the recipe says about its data is kept. The assertions follow what each
source carries into the text the model trains on: system prompts, Alpaca inputs, Dolly contexts, the
preferred answer (never the other one), ARC's options, GSM8K's gold answers, the chat template around it.
Training on the same data is tests/integration/test_full_recipes_train.py.
"""

from __future__ import annotations

import json

import pytest
from tests.recipe_fixtures import FULL_SCALE, local_recipe

from podium.cli import main
from podium.preview import preview_stage


@pytest.fixture(scope="module")
def recipes(hub_data, tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes")
    return {name: str(local_recipe(name, hub_data, tiny_dir, out, reward_model=str(tiny_dir))) for name in FULL_SCALE}


def by_source(entries, hub_data):
    names = {v: k for k, v in hub_data.items()}
    out = {}
    for e in entries:
        out.setdefault(names.get(e["source"], e["source"]), []).append(e)
    return out


def test_every_full_scale_recipe_plans_from_hub_ids_alone(tmp_path, capsys):
    """No hand-written local file: --dry-run of each recipe as shipped plans (offline: nothing to read yet)."""
    for name in FULL_SCALE:
        assert main(["run", f"recipes/{name}.yaml", "--dry-run", "--output", str(tmp_path / name)]) == 0, name
    assert "does not exist" not in capsys.readouterr().err


def test_rhea_sft_preview_shows_what_each_source_carries(recipes, hub_data):
    rows = by_source(preview_stage(recipes["rhea-sgd-dpo"], "sft", rows=3), hub_data)
    assert len(rows) == 10
    for entries in rows.values():  # the tiny model's chat template around every row, the loss on the answer only
        for e in entries:
            if "skipped" not in e:
                assert e["text"].startswith(("<|user|>", "<|system|>")) and e["text"].endswith("<|end|>")
                assert e["trained"].endswith("<|end|>") and "<|user|>" not in e["trained"]
    orca = rows["Open-Orca/SlimOrca"]
    assert orca[0]["text"].startswith("<|system|>SYS-ORCA: You are an AI assistant.")
    assert orca[0]["trained"] == "ORCA-ANSWER: 'Bonjour' means good morning.<|end|>"
    assert orca[1]["text"].startswith("<|user|>Is 7 a prime number?")  # its system prompt was ""
    alpaca = rows["vicgalle/alpaca-gpt4"]
    assert "Summarise the text in one sentence.\n\nINPUT-ALPACA: The cat sat" in alpaca[0]["text"]
    assert "INPUT-ALPACA" not in alpaca[0]["trained"]
    dolly = rows["databricks/databricks-dolly-15k"]
    assert "CONTEXT-DOLLY: The Harbour Bridge opened in March 1932" in dolly[0]["text"]
    assert "CONTEXT-DOLLY: Bees pollinate" in dolly[2]["text"]  # summarisation rows keep their passage
    for hub_id, marker in [("Intel/orca_dpo_pairs", "SYS-INTEL"), ("NeuralNovel/Neural-DPO", "SYS-NEURAL"),
                           ("jondurbin/truthy-dpo-v0.1", "SYS-TRUTHY")]:
        assert rows[hub_id][0]["text"].startswith(f"<|system|>{marker}"), hub_id
        assert "CHOSEN" in rows[hub_id][0]["trained"] and marker not in rows[hub_id][0]["trained"]
    assert [e["trained"][:13] for e in rows["stanfordnlp/SHP"]] == ["SHP-PREFERRED"] * 3  # labels 1, 0, 1
    assert ["SE-TOP" in e["trained"] for e in rows["HuggingFaceH4/stack-exchange-preferences"]] == [True] * 3
    assert [e["trained"][:11] for e in rows["argilla/distilabel-math-preference-dpo"]] == ["MATH-CHOSEN"] * 2
    hc3 = rows["Hello-SimpleAI/HC3"]
    assert hc3[0]["trained"].startswith("HC3-CHATGPT") and hc3[1]["skipped"] == "empty completion (chatgpt_answers[0])"


def test_rhea_sgd_prompts_come_with_gold_answers_from_gsm8k(recipes, hub_data):
    entries = preview_stage(recipes["rhea-sgd-dpo"], "sgd", rows=3)
    assert [e["answer"] for e in entries] == ["72", "10", "3,600"]
    assert entries[0]["prompt"].startswith("<|user|>Natalia sold clips") and entries[0]["prompt"].endswith("<|assistant|>")
    assert entries[0]["reference"].endswith("#### 72")


def test_smaug_arc_pairs_list_the_options_and_handle_numeric_labels(recipes, tmp_path, capsys):
    path = recipes["smaug-dpop"]
    assert main(["preview", path, "arc_pairs", "--rows", "3", "--json"]) == 0
    pairs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(pairs) == 3 + 3 + 2  # each wrong option of 4, 4 and 3 choices
    first = pairs[0]
    assert "\nA. Planetary density will decrease.\nB. Planetary years will become longer.\nC. Planetary days" in first["prompt"]
    assert first["chosen"] == "The answer is C. Planetary days will become shorter.<|end|>"
    assert first["prompt"].startswith("<|user|>") and first["prompt"].endswith("<|assistant|>")  # dpop's template
    numeric = [p for p in pairs if "1. a wax crayon\n2. a plastic spoon" in p["prompt"]]
    assert {p["chosen"] for p in numeric} == {"The answer is 4. an iron nail<|end|>"}
    assert {p["rejected"] for p in numeric} == {"The answer is 1. a wax crayon<|end|>", "The answer is 2. a plastic "
                                                "spoon<|end|>", "The answer is 3. a rubber eraser<|end|>"}
    metamath = preview_stage(path, "metamath_pairs", rows=2)
    assert all(p["chosen"] != p["rejected"] and p["prompt"].startswith("<|user|>") for p in metamath)


def test_sakura_dpo_reads_the_distilabel_columns(recipes):
    entries = preview_stage(recipes["sakura-solar"], "dpo_v1", rows=2)
    assert [(e["chosen"][:11], e["rejected"][:13]) for e in entries] == [("MATH-CHOSEN", "MATH-REJECTED")] * 2
    assert entries[0]["prompt"] == "<|user|>What is the derivative of x^2?<|end|><|assistant|>"


@pytest.mark.parametrize("name", ["sppo-gemma-2-9b", "sppo-gpm-llama-3-8b"])
def test_sppo_prompts_are_ultrafeedback_instructions(recipes, name):
    entries = preview_stage(recipes[name], "sppo", rows=3)
    assert [e["prompt"][:18] for e in entries] == ["<|user|>UF-PROMPT:"] * 3
    assert all(set(e) == {"source", "row", "prompt"} for e in entries)


def test_preview_names_the_stages_it_can_show(capsys):
    assert main(["preview", "recipes/quickstart.yaml", "card"]) == 2
    assert ("stage 'card' (card) reads no data; stages with data to preview: sft, eval_sft, sgd, dpop, eval_dpop, sppo, "
            "eval_sppo, eval_merge") in capsys.readouterr().err
    assert main(["preview", "recipes/quickstart.yaml", "sft", "--rows", "1"]) == 0
    assert "<|user|>What is " in capsys.readouterr().out
