"""`--dry-run` finds what used to fail late, and the tracebacks of the probes are messages (issue 26, item 6).

The probes: a 240-character stage name passed `--dry-run`, trained, then failed at publish; a 300-character
one ended in a traceback; layer ranges past a model's layers and a `max_new_tokens` beyond its positions
failed only when the stage ran; `podium -v` and `podium eval --limit -1` ended in tracebacks.
(Non-finite settings, booleans and 64-bit integers: tests/unit/test_settings_rules.py.)
"""

from __future__ import annotations

import pytest

from podium.cli import main
from podium.errors import ConfigError
from podium.planning import make_plan, plan_problems


def recipe(tmp_path, text: str):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("length", [240, 300])
def test_a_stage_name_too_long_for_the_filesystem_is_found_by_dry_run(tmp_path, capsys, length):
    r = recipe(tmp_path, f"stages:\n  - {{name: {'s' * length}, kind: tiny_model}}\n")
    assert main(["run", str(r), "--dry-run", "--output", str(tmp_path / "run")]) == 2  # old: 0 (240), traceback (300)
    err = capsys.readouterr().err
    assert f"({length} bytes) is too long" in err and "use a name of at most" in err


def test_an_output_dir_too_long_for_the_filesystem_is_a_config_error(tmp_path):
    r = recipe(tmp_path, "stages:\n  - {name: base, kind: tiny_model}\n")
    with pytest.raises(ConfigError, match="is too long"):
        make_plan(str(r), output=str(tmp_path / ("o" * 250)))


def test_dry_run_checks_layer_ranges_against_the_local_models(tiny_dir, tmp_path):
    r = recipe(tmp_path, f"""\
stages:
  - name: up
    kind: merge
    config:
      merge_method: passthrough
      slices:
        - sources: [{{model: {tiny_dir}, layer_range: [0, 2]}}]
        - sources: [{{model: {tiny_dir}, layer_range: [1, 8]}}]
""")
    problems = plan_problems(make_plan(str(r), output=str(tmp_path / "run")))  # the model has 2 layers
    assert any("stage 'up': merge:" in p and "layer" in p for p in problems), problems


def test_dry_run_checks_max_new_tokens_against_a_local_models_positions(tiny_dir, tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    r = recipe(tmp_path, f"stages:\n  - {{name: gen, kind: generate, model: {tiny_dir}, prompts: {tmp_path / 'p.jsonl'}, "
                         "max_new_tokens: 100000}\n")
    assert main(["run", str(r), "--dry-run", "--output", str(tmp_path / "run")]) == 2
    assert "max_new_tokens=100,000 does not fit the 512 positions" in capsys.readouterr().err


def test_podium_dash_v_alone_prints_help(capsys):
    assert main(["-v"]) == 0  # old code: IndexError
    assert "usage: podium COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("limit", ["-1", "0", "nan"])
def test_eval_limit_must_be_positive(tiny_dir, capsys, limit):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", str(tiny_dir), "--tasks", "arithmetic", "--limit", limit])
    assert e.value.code == 2 and "--limit" in capsys.readouterr().err
