"""Typed references, the shared PromptSource and the run-dir layout (podium.refs, podium.data.prompt_source,
podium.rundir): what `--dry-run` now catches, and what the pipeline writes."""

import json
import textwrap

import pytest

from podium.errors import ConfigError
from podium.planning import make_plan
from podium.refs import iter_refs
from podium.rundir import DONE_FILE, REPORT_FILE, STAGE_FILE, read_done, read_run_report, read_stage_record
from podium.stages import get_stage


def plan(tmp_path, stages: str):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n" + textwrap.indent(textwrap.dedent(stages), "  "))
    return make_plan(str(recipe), output=str(tmp_path / "run"))


@pytest.mark.parametrize("stages, error", [
    # a typo inside a data source of a mixture
    ("- {name: sft, kind: sft, model: m, data: [{taks: arithmetic, count: 5}]}\n",
     r"r.yaml:2: stage 'sft': unknown key 'data.0.taks'"),
    # a difficulty key the task does not take, inside a mixture and on a prompt source
    ("- {name: sft, kind: sft, model: m,\n   data: [{task: arithmetic, difficulty: {max_digit: 2}}]}\n",
     r"r.yaml:3: stage 'sft': key 'data.0.difficulty.max_digit': task 'arithmetic' has no difficulty setting "
     r"'max_digit'; it takes min_digits, max_digits, ops"),
    ("- name: e\n  kind: eval\n  model: m\n  difficulty: {max_digit: 2}\n",
     r"r.yaml:5: stage 'e': key 'difficulty.max_digit': task 'arithmetic' has no difficulty setting"),
    ("- {name: sgd, kind: sgd, model: m, task: arithmatic}\n", r"key 'task': unknown task 'arithmatic'"),
    ("- {name: sft, kind: sft, model: m, data: [{task: arithmetic, count: -5}]}\n",
     r"key 'data.0.count': Input should be greater than or equal to 1"),
    # a key inside selfplay's per-iteration `train:` settings
    ("- name: sp\n  kind: selfplay\n  model: m\n  train:\n    learnig_rate: 1.0e-4\n",
     r"r.yaml:6: stage 'sp': unknown key 'train.learnig_rate'"),
    ("- name: sp\n  kind: selfplay\n  model: m\n  train: {beta: 0}\n", r"key 'train.beta': Input should be greater"),
])
def test_dry_run_catches_errors_inside_nested_settings(tmp_path, stages, error):
    with pytest.raises(ConfigError, match=error):
        plan(tmp_path, stages)


def test_prompt_source_is_shared_and_eval_still_reads_data(tmp_path):
    from podium.data.prompt_source import PromptSource

    for kind in ("sgd", "selfplay", "eval"):
        assert issubclass(get_stage(kind).config, PromptSource)
    items = tmp_path / "items.jsonl"
    items.write_text('{"prompt": "What is 1 + 1?", "answer": "2", "task": "arithmetic"}\n')
    cfg = get_stage("eval").config.model_validate({"model": "m", "data": str(items)})  # the old key name
    assert cfg.prompts == str(items) and cfg.prompt_rows()[0]["answer"] == "2"
    assert [it["prompt"] for it in cfg.task_items("test", 2)] == [
        it["prompt"] for it in get_stage("sgd").config.model_validate({"model": "m"}).task_items("test", 2)]


def test_only_typed_references_enter_the_key_and_resolve_beside_the_recipe(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "cache").mkdir()
    stages = "- {name: t, kind: train, model: m, data: pairs.jsonl, reference_cache_dir: cache}\n"
    key = plan(tmp_path, stages).stages[0].key
    cfg = plan(tmp_path, stages).stages[0].config
    assert cfg.data == str((tmp_path / "pairs.jsonl").resolve())  # a reference: taken from beside the recipe
    assert cfg.reference_cache_dir == "cache"  # not a reference: left as written
    (tmp_path / "cache" / "entry").write_text("x")  # a cache's content is no input of the stage
    assert plan(tmp_path, stages).stages[0].key == key
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "c"}\n')
    assert plan(tmp_path, stages).stages[0].key != key


def test_references_are_read_from_the_schema():
    refs = list(iter_refs(get_stage("selfplay").config, {
        "model": "@dpo", "baseline": "org/base", "judge": {"kind": "gpm", "model": "@gpm"},
        "prompts": [{"path": "org/prompts", "count": 10}, {"task": "arithmetic"}], "task": "org/not-a-ref"}))
    assert sorted(refs) == sorted([(("model",), "model", "@dpo"), (("baseline",), "model", "org/base"),
                                   (("judge", "model"), "model", "@gpm"),
                                   (("prompts", 0, "path"), "dataset", "org/prompts")])


def test_pipeline_writes_the_run_dir_layout(tmp_path):
    from podium.pipeline import run_plan

    p = plan(tmp_path, "- {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1,"
                       " num_heads: 2}\n")
    report = run_plan(p, show_progress=False)
    folder = tmp_path / "run" / "base"
    assert {STAGE_FILE, DONE_FILE, "metrics.json"} <= {f.name for f in folder.iterdir()}
    record = read_stage_record(folder)
    assert record.kind == "tiny_model" and record.key == p.stages[0].key and record.config["hidden_size"] == 16
    assert read_done(folder)["metrics"] == report["stages"][0]["metrics"]
    assert read_run_report(tmp_path / "run") == json.loads((tmp_path / "run" / REPORT_FILE).read_text()) == report
    assert report["stages"][0]["status"] == "ran"
