"""Ctrl-C says what running the command again will do (issue 13 item 8).

The probe: SIGINT during `podium merge` printed "interrupted; run the same command again to resume", though
a merge resumes nothing. Now each command's message is true of it: a recipe's finished stages are kept and
training resumes from checkpoints; a merge starts over.
"""

import pytest

from podium.cli import main
from podium.cli import merge as merge_cli
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.stages import StageConfig, stage


class InterruptedConfig(StageConfig):
    pass


@stage("test_interrupted", InterruptedConfig)
def interrupted_stage(cfg, ctx):
    raise KeyboardInterrupt


def test_merge_says_it_starts_over(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(merge_cli, "run_merge", interrupted)
    cfg = tmp_path / "m.yml"
    cfg.write_text("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: "
                   "{weight: 1}}]\n")
    assert main(["merge", str(cfg), str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "again to resume" not in err  # old code: "interrupted; run the same command again to resume"
    assert "a merge does not resume: run the same command again to start it over" in err


def test_run_says_what_is_kept(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: a, kind: test_interrupted}\n")
    assert main(["run", str(recipe), "--output", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "finished stages are kept, a training stage resumes from its last checkpoint" in err
    # ... and it is true: the interrupted stage is resumed, not started from a clean folder.
    assert make_plan(str(recipe), output=str(tmp_path / "run")).stages[0].status == "resume"


@pytest.mark.parametrize("argv, expected", [
    (["sft", "c.yaml"], "continue from the last checkpoint"),
    (["stage", "train", "c.yaml"], "continue from the last checkpoint"),
    (["selfplay", "c.yaml"], "after the last finished iteration"),
    (["eval", "c.yaml"], "nothing resumes: run the same command again to start over"),
    (["generate", "c.yaml"], "nothing resumes"),
])
def test_stage_commands(monkeypatch, capsys, argv, expected):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("podium.cli.dispatch.run_command", interrupted)
    assert main(argv) == 130
    assert expected in capsys.readouterr().err


def test_run_plan_lets_the_interrupt_through_and_releases_the_lock(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: a, kind: test_interrupted}\n")
    with pytest.raises(KeyboardInterrupt):
        run_plan(make_plan(str(recipe), output=str(tmp_path / "run")))
    with pytest.raises(KeyboardInterrupt):  # not "in use": the first run's lock went with it
        run_plan(make_plan(str(recipe), output=str(tmp_path / "run")))
