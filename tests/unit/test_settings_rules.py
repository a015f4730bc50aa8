"""Settings are read as YAML's spec says and numbers are numbers (issue 26, items 4 and 6).

The probes: of two `<<:` merge keys the first won (PyYAML's choice; other tools take the last, and YAML
forbids duplicate keys); `batch_size: true` trained with batch size 1; `epochs: .inf`, `seed=1e20` and a
3000-deep YAML ended in tracebacks; `beta: .inf` was reported as "lower learning_rate" after training had
started. Each is now a ConfigError naming the file, line and key before anything runs.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml
from tests.security.bounds import plant_fifo, time_bound

from podium.cli import main
from podium.config import parse_yaml
from podium.errors import ConfigError
from podium.planning import make_plan

# The examples of the YAML merge-key spec (https://yaml.org/type/merge.html): "All the following maps are equal".
SPEC_EXAMPLE = """\
- &CENTER { x: 1, y: 2 }
- &LEFT { x: 0, y: 2 }
- &BIG { r: 10 }
- &SMALL { r: 1 }
- x: 1
  y: 2
  r: 10
  label: center/big
- << : *CENTER
  r: 10
  label: center/big
- << : [ *CENTER, *BIG ]
  label: center/big
- << : [ *BIG, *LEFT, *SMALL ]
  x: 1
  label: center/big
"""


def test_merge_keys_follow_the_yaml_spec_example():
    ours = parse_yaml(SPEC_EXAMPLE).data
    assert ours[4] == ours[5] == ours[6] == ours[7] == {"x": 1, "y": 2, "r": 10, "label": "center/big"}
    assert ours == yaml.safe_load(SPEC_EXAMPLE)  # PyYAML agrees where the spec is clear


def test_two_merge_keys_in_one_mapping_are_refused():
    text = "a: &a {lr: 1}\nb: &b {lr: 2}\nsft:\n  <<: *a\n  <<: *b\n"
    with pytest.raises(ConfigError, match=r"r.yaml:5: a second `<<` merge key .* line 4.*`<<: \[\*first, \*second\]`"):
        parse_yaml(text, "r.yaml")  # old code: {lr: 1}, the first; the reading of YAML: the last


RECIPE = """\
name: rules
stages:
  - {name: base, kind: tiny_model}
  - name: sft
    kind: sft
    model: "@base"
    data: [{task: arithmetic, count: 8}]
    max_steps: 1
  - name: dpo
    kind: train
    objective: dpo
    model: "@sft"
    data: [{task: arithmetic, count: 8}]
"""


@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    return p


@pytest.mark.parametrize("override,message", [
    ("sft.batch_size=true", "r.yaml:4: stage 'sft': key 'batch_size': expected a number, got the boolean true"),
    ("sft.epochs=.inf", "key 'epochs': must be a finite number, got inf"),
    ("sft.learning_rate=.nan", "key 'learning_rate': must be a finite number, got nan"),
    ("dpo.beta=.inf", "key 'beta': must be a finite number, got inf"),
    ("seed=100000000000000000000", "recipe: key 'seed': 100000000000000000000 is outside the 64-bit integer range"),
    ("sft.seed=1e20", "key 'seed': 1e+20 is outside the 64-bit integer range"),
    ("sft.data.0.count=true", "key 'data.0.count': expected a number, got the boolean true"),
    ("sft.data.0.count=.inf", "key 'data.0.count': must be a finite number"),
    ("base.hidden_size=false", "key 'hidden_size': expected a number, got the boolean false"),
])
def test_numbers_are_checked_when_the_plan_is_made(recipe, override, message):
    with pytest.raises(ConfigError) as e:
        make_plan(str(recipe), [override], output=str(recipe.parent / "run"))
    assert message in str(e.value)


def test_a_boolean_setting_still_takes_booleans(recipe):
    plan = make_plan(str(recipe), ["sft.packing=true", "sft.shuffle=false"], output=str(recipe.parent / "run"))
    assert plan.stages[1].config.packing is True and plan.stages[1].config.shuffle is False


def test_dry_run_reports_beta_inf_as_a_setting_not_as_a_learning_rate(recipe, capsys):
    assert main(["run", str(recipe), "--dry-run", "dpo.beta=.inf"]) == 2
    err = capsys.readouterr().err
    assert "key 'beta': must be a finite number" in err and "learning_rate" not in err


def test_a_3000_deep_yaml_is_a_config_error(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("stages: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.yaml:1: nested deeper than 64 levels .*PODIUM_MAX_YAML_DEPTH"):
        make_plan(str(p))


def test_a_yaml_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("PODIUM_MAX_YAML_MB", "0.01")
    p = tmp_path / "big.yaml"
    p.write_text(textwrap.dedent(RECIPE) + "# " + "x" * 20_000 + "\n")
    with pytest.raises(ConfigError, match=r"big.yaml: .* over the limit on a YAML recipe or config file .*"
                                          r"PODIUM_MAX_YAML_MB="):
        make_plan(str(p))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_a_recipe_that_is_not_a_regular_file_is_refused_at_once(tmp_path, capsys, kind):
    path = {"fifo": lambda: plant_fifo(tmp_path / "r.yaml"), "dev-zero": lambda: "/dev/zero",
            "folder": lambda: tmp_path}[kind]()
    with time_bound(20):  # old code: /dev/zero grew without bound, a FIFO blocked forever
        assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err or "is a folder" in err
