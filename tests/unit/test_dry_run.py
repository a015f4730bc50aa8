"""`podium run --dry-run` finds every config error the run would hit (issue 13 item 6).

The probes of the issue — a typo inside a data source (`taks:`), a difficulty key (`max_digit`), `count: -5`,
a key inside selfplay's `train:` — were closed by the renovation (tests/unit/test_run_schema.py checks
their messages on make_plan). Here they go through the command a user types, and a real run stops before
anything runs (the selfplay one used to fail after all generation and judging, leaving iter1/ behind).
Then what was still found only mid-run: the inline mergekit config of a `merge` stage, and ranges.
"""

import textwrap

import pytest

from podium.cli import main
from podium.errors import ConfigError
from podium.planning import make_plan

HEAD = """\
stages:
  - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, num_heads: 2}
"""
PROBES = {
    "taks": ("  - {name: sft, kind: sft, model: '@base', data: [{taks: arithmetic, count: 5}]}\n",
             "r.yaml:3: stage 'sft': unknown key 'data.0.taks'"),
    "max_digit": ("  - {name: sft, kind: sft, model: '@base', data: [{task: arithmetic, difficulty: {max_digit: 2}}]}\n",
                  "key 'data.0.difficulty.max_digit': task 'arithmetic' has no difficulty setting 'max_digit'"),
    "count": ("  - {name: e, kind: eval, model: '@base', count: -5}\n",
              "r.yaml:3: stage 'e': key 'count': Input should be greater than or equal to 1"),
    "selfplay_train": ("  - {name: sp, kind: selfplay, model: '@base', count: 4, iterations: 1, num_samples: 2,\n"
                       "     eval_count: 2, train: {lerning_rate: 1.0e-4}}\n",
                       "r.yaml:4: stage 'sp': unknown key 'train.lerning_rate'"),
}


@pytest.mark.parametrize("probe", PROBES)
def test_the_issues_probes_stop_dry_run_and_run_alike(tmp_path, capsys, probe):
    stage_text, message = PROBES[probe]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(HEAD + stage_text)
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--output", str(run), "--dry-run"]) == 2
    assert message in capsys.readouterr().err
    assert main(["run", str(recipe), "--output", str(run)]) == 2  # nothing runs, not even `base`
    assert message in capsys.readouterr().err
    assert not run.exists()


MERGE = """\
stages:
  - {name: a, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, num_heads: 2}
  - name: m
    kind: merge
    config:
      merge_method: slerp
      base_model: "@a"
      models: [{model: "@a"}, {model: "@a"}]
      parameters: {t: 0.5}
"""


@pytest.mark.parametrize("override, message", [
    ("m.config.parameters.t=1.5", "slerp t=1.5 is outside [0, 1]"),
    ("m.config.merge_method=slerpp", "unknown merge method 'slerpp'"),
    ("m.config.parameters.weight=1", "unknown parameter 'weight' for merge method 'slerp'"),
    ("m.max_shard_size_mb=0", "Input should be greater than or equal to 1"),
])
def test_merge_config_is_checked_when_planned(tmp_path, override, message):
    """Before: these passed --dry-run and failed when the merge stage ran, after every stage before it."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(MERGE)
    with pytest.raises(ConfigError, match=r"r.yaml:\d+: stage 'm': key '.*" + message.replace("[", r"\[")
                       .replace("]", r"\]").replace("(", r"\(")):
        make_plan(str(recipe), [override], output=str(tmp_path / "run"))
    assert make_plan(str(recipe), output=str(tmp_path / "run")).stages[1].kind == "merge"


@pytest.mark.parametrize("stage_text, message", [
    ("{name: t, kind: tiny_model, num_kv_heads: 0}", "key 'num_kv_heads': Input should be greater than or equal to 1"),
    ("{name: t, kind: tiny_model, max_position_embeddings: 0}", "key 'max_position_embeddings'"),
    ("{name: t, kind: train, model: m, data: d.jsonl, max_length: 0}", "key 'max_length'"),
    ("{name: t, kind: train, model: m, data: d.jsonl, reference_batch_size: 0}", "key 'reference_batch_size'"),
    ("{name: t, kind: sft, model: m, data: d.jsonl, lora: {alpha: 0}}", "key 'lora.alpha': Input should be greater"),
    ("{name: t, kind: train, model: m, data: d.jsonl, beta: 0}", "key 'beta'"),
    ("{name: t, kind: train, model: m, data: d.jsonl, learning_rate: -1.0e-4}", "key 'learning_rate'"),
    ("{name: t, kind: sft, model: m, data: d.jsonl, learning_rate: 0}", "key 'learning_rate'"),
    ("{name: t, kind: generate, model: m, prompts: d.jsonl, top_p: 1.5}", "key 'top_p'"),
    ("{name: t, kind: train, model: m, data: d.jsonl, objective: dpo, label_smoothing: 0.5}", "key 'label_smoothing'"),
])
def test_ranges(tmp_path, stage_text, message):
    (tmp_path / "d.jsonl").write_text("{}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"stages:\n  - {stage_text}\n"))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make_plan(str(recipe), output=str(tmp_path / "run"))
