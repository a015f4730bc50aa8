"""Source formats read the published schemas (tests/hub_fixtures.py) as their authors meant (issue 23, item 1).

Each test reads a fixture the way a recipe names it and checks what reaches the record: system prompts,
Alpaca inputs, Dolly contexts, the preferred answer, nested fields; and that a row the format cannot read
is a DataError naming source, row and field, while an empty value is skipped and counted.
"""

from __future__ import annotations

import json
import random

import pytest
from tests.hub_fixtures import fixture_rows, scripted_repo

from podium.data.formats import ALPACA_PLAIN
from podium.data.mixture import DataSource, build_mixture, draw
from podium.data.rankings import ultrafeedback_score
from podium.errors import DataError
from podium.planning import make_plan
from podium.tasks import get_task


def read(hub_data, hub_id, use, **settings):
    skipped = {}
    rows, _ = build_mixture([{"path": hub_data[hub_id], **settings}], shuffle=False, use=use, skipped=skipped)
    return rows, skipped.get(hub_data[hub_id], {})


def turns(value):
    return [(m["role"], m["content"]) for m in value]


def test_sharegpt_keeps_system_turns_and_maps_roles(hub_data):
    rows, skipped = read(hub_data, "Open-Orca/SlimOrca", "sft", format="sharegpt")
    assert not skipped and len(rows) == 3
    assert turns(rows[0]["messages"]) == [("system", "SYS-ORCA: You are an AI assistant. Think step by step."),
                                          ("user", "Translate 'good morning' to French."),
                                          ("assistant", "ORCA-ANSWER: 'Bonjour' means good morning.")]
    assert [m["role"] for m in rows[1]["messages"]] == ["user", "assistant"]  # an empty system prompt is none
    prompts, _ = read(hub_data, "Open-Orca/SlimOrca", "prompts", format="sharegpt")
    assert [m["role"] for m in prompts[0]["prompt"]] == ["system", "user"]  # up to the last user turn


def test_sharegpt_custom_keys_and_unknown_role(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps({"dialog": [{"speaker": "USER", "text": "hi"}, {"speaker": "BOT", "text": "yo"}]}) + "\n")
    bad.write_text(good.read_text() + json.dumps({"dialog": [{"speaker": "USER", "text": "hi"},
                                                            {"speaker": "TOOL", "text": "x"}]}) + "\n")
    settings = {"format": "sharegpt", "columns": {"messages": "dialog"}, "role_key": "speaker", "content_key": "text",
                "roles": {"USER": "user", "BOT": "assistant"}}
    (row,), _ = build_mixture([{"path": str(good), **settings}], use="sft")
    assert turns(row["messages"]) == [("user", "hi"), ("assistant", "yo")]
    with pytest.raises(DataError, match=rf"{bad}:2: dialog\[1\]: role 'TOOL' is not mapped .*add it to `roles:`"):
        build_mixture([{"path": str(bad), **settings}], use="sft")


def test_alpaca_joins_instruction_and_input(hub_data):
    rows, _ = read(hub_data, "vicgalle/alpaca-gpt4", "sft", format="alpaca")
    assert turns(rows[0]["prompt"]) == [("user", "Summarise the text in one sentence.\n\nINPUT-ALPACA: The cat sat on "
                                         "the mat all afternoon, ignoring the dog.")]
    assert turns(rows[1]["prompt"]) == [("user", "Give three tips for staying healthy.")]  # input "" adds nothing
    assert turns(rows[0]["completion"]) == [("assistant", "ALPACA-OUT: A cat spent the afternoon on a mat, ignoring a dog.")]


def test_alpaca_plain_text_is_the_alpaca_template(hub_data):
    """chat_template: false renders the Stanford Alpaca prompt, which is what the dataset's own `text` column holds."""
    rows, _ = read(hub_data, "vicgalle/alpaca-gpt4", "sft", format="alpaca", chat_template=False)
    published = fixture_rows("vicgalle/alpaca-gpt4")
    for row, raw in zip(rows, published):
        assert row["chat_template"] is False
        assert row["prompt"] + row["completion"] == raw["text"]
    assert rows[1]["prompt"] == ALPACA_PLAIN[False].format(instruction="Give three tips for staying healthy.", input="")


def test_dolly_context_reaches_the_prompt(hub_data):
    rows, _ = read(hub_data, "databricks/databricks-dolly-15k", "sft", format="alpaca",
                   columns={"input": "context", "output": "response"})
    assert "CONTEXT-DOLLY: The Harbour Bridge opened" in rows[0]["prompt"][0]["content"]
    assert rows[1]["prompt"][0]["content"] == "Which is a species of fish? Tope or Rope"


def test_preference_keeps_system_and_takes_chosen_for_sft(hub_data):
    rows, _ = read(hub_data, "Intel/orca_dpo_pairs", "sft", format="preference", columns={"prompt": "question"})
    assert turns(rows[0]["prompt"]) == [("system", "SYS-INTEL: You are an AI assistant that helps people find "
                                         "information."), ("user", "Is the Moon a planet?")]
    assert rows[0]["completion"] == "INTEL-CHOSEN: No, the Moon is Earth's natural satellite."
    assert rows[1]["prompt"] == "What is 12 times 12?"  # system "" is no system prompt
    pairs, _ = read(hub_data, "jondurbin/truthy-dpo-v0.1", "pairs", format="preference")
    assert pairs[0]["prompt"][0] == {"role": "system", "content": "SYS-TRUTHY: You are an unbiased, honest, helpful AI "
                                                                  "assistant."}
    assert pairs[0]["rejected"] == "Yes, 90% is unused."


def test_preference_splits_full_conversations_as_trl(tmp_path):
    """HuggingFaceH4/ultrafeedback_binarized (its card) keeps the user turn inside chosen and rejected."""
    user = {"role": "user", "content": "Which books are banned?"}
    path = tmp_path / "h4.jsonl"
    path.write_text(json.dumps({"prompt": user["content"], "prompt_id": "ab",
                                "chosen": [user, {"role": "assistant", "content": "None are."}],
                                "rejected": [user, {"role": "assistant", "content": "Many."}],
                                "messages": [user, {"role": "assistant", "content": "None are."}],
                                "score_chosen": 8.0, "score_rejected": 5.0}) + "\n")
    (pair,), _ = build_mixture([{"path": str(path), "format": "preference"}], use="pairs")
    assert pair["prompt"] == [user] and turns(pair["chosen"]) == [("assistant", "None are.")]
    assert turns(pair["rejected"]) == [("assistant", "Many.")]


def test_shp_trains_on_the_comment_labels_prefer(hub_data):
    rows, _ = read(hub_data, "stanfordnlp/SHP", "sft", format="shp")
    assert all(turns(r["completion"])[0][1].startswith("SHP-PREFERRED") for r in rows)  # labels 1, 0, 1
    pairs, _ = read(hub_data, "stanfordnlp/SHP", "pairs", format="shp")
    assert [p["chosen"][0]["content"][:13] for p in pairs] == ["SHP-PREFERRED"] * 3
    assert (pairs[1]["score_chosen"], pairs[1]["score_rejected"]) == (57.0, 3.0)


def test_stack_exchange_top_answer_and_pairs_by_score(hub_data):
    rows, _ = read(hub_data, "HuggingFaceH4/stack-exchange-preferences", "sft", format="stack_exchange")
    assert [turns(r["completion"])[0][1][3:9] for r in rows] == ["SE-TOP"] * 3  # a tie at the top: first listed
    pairs, skipped = read(hub_data, "HuggingFaceH4/stack-exchange-preferences", "pairs", format="stack_exchange")
    assert skipped == {"no lower-scored answer": 1}  # qid 103 has one answer
    assert all("SE-TOP" in p["chosen"][0]["content"] and "SE-LOW" in p["rejected"][0]["content"] for p in pairs)
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)


def test_ultrafeedback_binarised_as_h4(hub_data):
    """Worked example (tests/fixtures/hub/openbmb__UltraFeedback.jsonl): row 0's mean ratings are gpt-4 5.0,
    alpaca 2.75, falcon (3 + 4 + 3) / 3 = 3.33 ("N/A" left out), llama 3.0: gpt-4 is chosen, one of the other
    three rejected; row 1 comes from TruthfulQA and is left out; row 2 rates all four 5.0: a tie."""
    completions = fixture_rows("openbmb/UltraFeedback")[0]["completions"]
    assert [round(ultrafeedback_score(c), 2) for c in completions] == [5.0, 2.75, 3.33, 3.0]
    pairs, skipped = read(hub_data, "openbmb/UltraFeedback", "pairs", format="ultrafeedback")
    assert skipped == {"truthful_qa prompt (left out of the binarised set)": 1, "tie": 1}
    (pair,) = pairs
    assert pair["chosen"][0]["content"].startswith("UF-BEST") and pair["rejected"][0]["content"].startswith("UF-WORSE")
    assert pair["score_chosen"] == 5.0 and pair["score_rejected"] < 5.0
    seen = {build_mixture([{"path": hub_data["openbmb/UltraFeedback"], "format": "ultrafeedback", "seed": s}],
                          use="pairs")[0][0]["rejected"][0]["content"] for s in range(12)}
    assert len(seen) == 3  # "one of the remaining 3 at random"
    prompts, _ = read(hub_data, "openbmb/UltraFeedback", "prompts", format="ultrafeedback")
    assert [set(p) - {"_source"} for p in prompts] == [{"prompt"}] * 3  # no completions copied along


def test_field_paths_reach_nested_fields_and_missing_ones_are_counted(hub_data):
    rows, skipped = read(hub_data, "Hello-SimpleAI/HC3", "sft", revision="refs/convert/parquet",
                         data_files=["all/train/*.parquet"], columns={"prompt": "question", "completion": "chatgpt_answers[0]"})
    assert [r["completion"][:11] for r in rows] == ["HC3-CHATGPT"] * 2
    assert skipped == {"empty completion (chatgpt_answers[0])": 1}  # the row with no ChatGPT answer
    arc, _ = read(hub_data, "allenai/ai2_arc", None, columns={"options": "choices.text", "labels": "choices.label"})
    assert arc[1]["labels"] == ["1", "2", "3", "4"] and arc[1]["options"][3] == "an iron nail"
    se, _ = read(hub_data, "HuggingFaceH4/stack-exchange-preferences", None, columns={"scores": "answers[*].pm_score"})
    assert se[0]["scores"] == [2, 9, 0]


@pytest.mark.parametrize("settings,message", [
    ({"format": "preference"}, r"\[0\]: missing field 'chosen' \(the row has id, question, choices, answerKey\); map it "
                               r"with `columns: {chosen: FIELD}` \(format preference\)"),
    ({"format": "alpaca", "columns": {"instruction": "questoin"}}, r"\[0\]: missing field 'questoin' \(the row has "),
    ({"columns": {"prompt": "choices.text", "completion": "answerKey"}}, r"\[0\]: field 'choices.text' must be a string "
                                                                         r"or a list of {role, content} messages \(got a "
                                                                         r"list of string\)"),
    ({"columns": {"prompt": "choices.txt", "completion": "answerKey"}}, r"\[0\]: missing field 'choices.txt' \(choices has "
                                                                        r"text, label\)"),
    ({}, r"\[0\]: expected 'messages' or 'prompt' and 'completion' fields; the row has answerKey, choices, id, question"),
])
def test_unreadable_rows_name_source_row_and_field(hub_data, settings, message):
    path = hub_data["allenai/ai2_arc"]
    with pytest.raises(DataError, match=rf"{path}{message}"):
        build_mixture([{"path": path, **settings}], use="sft")


def test_gold_answers_from_gsm8k(hub_data):
    rows, _ = read(hub_data, "openai/gsm8k", "prompts", name="main", columns={"prompt": "question"},
                   gold={"field": "answer", "pattern": r"####\s*(.+)$", "checker": "arithmetic"})
    assert [r["answer"] for r in rows] == ["72", "10", "3,600"]
    assert all(r["task"] == "arithmetic" and r["reference"].endswith(f"#### {r['answer']}") for r in rows)
    assert get_task("arithmetic").check("so 3600 apples", rows[2]["answer"])  # the checker drops the comma


def test_hc3_script_dataset_loads_from_its_data_files(tmp_path):
    """The real Hub loading code on local folders laid out like the repository: datasets refuses the script; the
    parquet conversion is read when there is one, `data_files:` otherwise; the error names that fix."""
    bare = scripted_repo("Hello-SimpleAI/HC3", tmp_path / "bare" / "HC3", parquet=False)
    with pytest.raises(DataError, match=r"published with a loading script.*Fix: name the repository's data files in the "
                                        r"source, e.g. `data_files: all.jsonl`"):
        build_mixture([{"path": str(bare), "name": "all"}], use=None)
    rows, _ = build_mixture([{"path": str(bare), "data_files": "all.jsonl"}], use=None, shuffle=False)
    assert [r["id"] for r in rows] == ["0", "1", "2"]
    converted = scripted_repo("Hello-SimpleAI/HC3", tmp_path / "converted" / "HC3", data_file=False)
    rows, _ = build_mixture([{"path": str(converted), "name": "all"}], use=None, shuffle=False)
    assert rows[2]["human_answers"] == ["HC3-HUMAN: a payment to shareholders.", "HC3-HUMAN: profit sharing."]


def test_lazy_draw_is_the_in_memory_draw(tmp_path, hub_data):
    """Drawing indices then reading rows picks what `rng.sample(rows, count)` picked when every row was in memory."""
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(500)))
    for count, seed in [(17, 0), (200, 3)]:
        rows, _ = build_mixture([{"path": str(path), "count": count}], seed=seed, shuffle=False)
        label = str(path)
        expected = draw([{"prompt": f"q{i}"} for i in range(500)], count, random.Random(f"{seed}:0:{label}"), label)
        assert [r["prompt"] for r in rows] == [e["prompt"] for e in expected]
    saved, _ = build_mixture([{"path": hub_data["openai/gsm8k"], "count": 2, "columns": {"prompt": "question",
                                                                                       "completion": "answer"}}], seed=5)
    assert len(saved) == 2


@pytest.mark.parametrize("source,message", [
    ("{path: d.jsonl, format: sharegtp}", "key 'data.0.format': unknown format 'sharegtp'; known: auto, messages, sharegpt"),
    ("{path: d.jsonl, format: alpaca, columns: {instrution: q}}", "key 'data.0.columns.instrution': format 'alpaca' has no "
                                                                 "column 'instrution'"),
    ("{path: d.jsonl, columns: {prompt: 'a[x'}}", "key 'data.0.columns.prompt': field path 'a[x'"),
    ("{path: d.jsonl, format: shp, columns: {promt: q}}", "key 'data.0.columns.promt': format 'shp' has no column 'promt'"),
    ("{path: d.jsonl, format: alpaca, role_key: from}", "key 'data.0.role_key': 'role_key' is a setting of the messages "
                                                       "and sharegpt formats"),
    ("{path: d.jsonl, gold: {field: answer, checker: chess}}", "key 'data.0.gold.checker': unknown task 'chess'"),
    ("{task: arithmetic, columns: {prompt: q}}", "key 'data.0.columns': 'columns' is a setting of dataset sources"),
])
def test_source_settings_are_checked_with_the_recipe(tmp_path, source, message):
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stages:\n  - {{name: sft, kind: sft, model: m, data: [{source}]}}\n")
    with pytest.raises(Exception, match=r"r.yaml:2: stage 'sft': " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("'a\\[x'", "'a\\[x'")):
        make_plan(str(recipe), output=str(tmp_path / "run"))


def test_data_source_defaults_are_the_old_behaviour():
    src = DataSource(path="x.jsonl")
    assert (src.format, src.chat_template, src.columns) == ("auto", True, None)
