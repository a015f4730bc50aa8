"""`--dry-run` reads the first rows of every local or reachable source (issue 23, item 5).

Schema problems (missing or nested fields, wrong types, SGD prompts without gold answers, a pair builder's
fields) are reported with stage, source and row before anything trains; a recipe whose sources read
cleanly plans as before.
"""

from __future__ import annotations

import json

import pytest

from podium.cli import main


def recipe_with(tmp_path, stage: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, "
                    "num_heads: 2}\n" + stage)
    return str(path)


PROBLEMS = {
    "missing": ("  - {name: sft, kind: sft, model: '@base', data: [{path: ARC, format: preference}]}\n",
                "stage 'sft': data source 0 (ARC): ARC[0]: missing field 'chosen' (the row has id, question, choices, "
                "answerKey); map it with `columns: {chosen: FIELD}` (format preference)"),
    "nested": ("  - {name: sft, kind: sft, model: '@base', data: [{path: ARC, columns: {prompt: question, completion: "
               "choices}}]}\n",
               "ARC[0]: field 'choices' must be a string or a list of {role, content} messages (got object)"),
    "wrong_type": ("  - {name: dpo, kind: train, model: '@base', data: [{path: ARC, format: preference, columns: "
                   "{prompt: question, chosen: choices.text, rejected: answerKey}}]}\n",
                   "stage 'dpo': data source 0 (ARC): ARC[0]: field 'choices.text' must be a string or a list of "
                   "{role, content} messages (got a list of string)"),
    "no_gold": ("  - {name: sgd, kind: sgd, model: '@base', prompts: [{path: ARC, columns: {prompt: question}}]}\n",
                "stage 'sgd': data source 0 (ARC): ARC[0]: SGD needs prompts with gold answers ('answer' and 'task'); "
                "read them from a dataset with `gold:"),
    "builder": ("  - {name: mc, kind: pairs, builder: multiple_choice, data: [{path: ARC}], prompt_field: question, "
                "choices_field: choices.txt, answer_field: answerKey}\n",
                "stage 'mc': data source 0 (ARC): ARC[0]: missing field 'choices.txt' (choices has text, label)"),
}


@pytest.mark.parametrize("probe", PROBLEMS)
def test_dry_run_reports_schema_problems_with_stage_source_and_row(hub_data, tmp_path, capsys, probe):
    stage, message = PROBLEMS[probe]
    arc = hub_data["allenai/ai2_arc"]
    path = recipe_with(tmp_path, stage.replace("ARC", arc))
    run = tmp_path / "run"
    assert main(["run", path, "--output", str(run), "--dry-run"]) == 2
    assert message.replace("ARC", arc) in capsys.readouterr().err
    assert main(["run", path, "--output", str(run)]) == 2  # and a run stops before `base`
    assert not (run / "base").exists()


def test_dry_run_passes_sources_that_read_cleanly(hub_data, tmp_path, capsys):
    arc = hub_data["allenai/ai2_arc"]
    stage = (f"  - {{name: mc, kind: pairs, builder: multiple_choice, data: [{{path: {arc}}}], prompt_field: question, "
             "choices_field: choices.text, labels_field: choices.label, answer_field: answerKey}\n"
             f"  - {{name: sft, kind: sft, model: '@base', data: [{{path: {hub_data['Open-Orca/SlimOrca']}, "
             "format: sharegpt}]}\n")
    assert main(["run", recipe_with(tmp_path, stage), "--output", str(tmp_path / "run"), "--dry-run"]) == 0


def test_dry_run_reads_only_the_first_rows(tmp_path, capsys):
    """A bad row past the first few is the run's to find (with its file and line); the dry run stays cheap."""
    rows = [{"prompt": "a", "completion": "b"}] * 10 + [{"prompt": "a"}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stage = f"  - {{name: sft, kind: sft, model: '@base', data: [{{path: {data}}}]}}\n"
    assert main(["run", recipe_with(tmp_path, stage), "--output", str(tmp_path / "run"), "--dry-run"]) == 0
    bad = f"  - {{name: sft, kind: sft, model: '@base', data: [{{path: {data}, format: alpaca}}]}}\n"
    assert main(["run", recipe_with(tmp_path, bad), "--output", str(tmp_path / "run"), "--dry-run"]) == 2
    assert f"{data}:1: missing field 'instruction'" in capsys.readouterr().err
