"""Podium deletes and overwrites only what it wrote (issue 13 item 1).

The probe: `podium run r.yaml --output .` with a stage named `data` deleted the user's ./data/mine.jsonl
(`shutil.rmtree` of any folder with a stage's name). Now a stage folder is removed only when podium's own
stage.json says podium made it; anything else stops the run before any stage runs, and `--dry-run`
reports it. `podium card` / `podium report` write only into podium run dirs.
"""

import json
import os
import textwrap

import pytest
from tests.security.planting import snapshot

from podium.cli import main
from podium.errors import PodiumError
from podium.files import write_json
from podium.pipeline import run_plan
from podium.planning import make_plan, plan_problems
from podium.stages import StageConfig, stage

CALLS: list[str] = []


class SafeConfig(StageConfig):
    value: int = 0


@stage("test_safe", SafeConfig, outputs={"out": "out.json"})
def safe_stage(cfg, ctx):
    CALLS.append(ctx.name)
    write_json(ctx.out_dir / "out.json", {"value": cfg.value})
    return {"value": cfg.value}


RECIPE = """\
name: safe
stages:
  - {name: first, kind: test_safe, value: 1}
  - {name: data, kind: test_safe, value: 2}
"""


@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(RECIPE))
    CALLS.clear()
    return p


@pytest.fixture
def project(tmp_path):
    """A user's project folder: data/mine.jsonl and their own report.md (what `--output .` points at)."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "mine.jsonl").write_text('{"prompt": "mine"}\n')
    return folder


def test_probe_output_dot_keeps_a_users_folder_named_like_a_stage(recipe, project, monkeypatch):
    """The probe as the user ran it: `podium run r.yaml --output .` from the project folder."""
    monkeypatch.chdir(project)
    before = snapshot(project)
    assert main(["run", str(recipe), "--output", "."]) == 2  # old code: exit 0, data/mine.jsonl deleted
    assert snapshot(project) == before and CALLS == []  # nothing ran, not even the stage before `data`


def test_dry_run_reports_the_conflict(recipe, project, capsys):
    assert main(["run", str(recipe), "--output", str(project), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{project / 'data'} exists and podium did not write it (no stage.json)" in err
    assert (project / "data" / "mine.jsonl").exists()


def test_a_folder_podium_made_is_still_replaced_when_its_config_changes(recipe, tmp_path):
    run = tmp_path / "run"
    run_plan(make_plan(str(recipe), output=str(run)))
    (run / "data" / "stale.txt").write_text("from the old config")
    CALLS.clear()
    run_plan(make_plan(str(recipe), ["data.value=3"], output=str(run)))
    assert CALLS == ["data"] and not (run / "data" / "stale.txt").exists()
    assert json.loads((run / "data" / "out.json").read_text()) == {"value": 3}


@pytest.mark.parametrize("kind", ["link", "file"])
def test_stage_path_that_is_a_link_or_a_file_is_refused(recipe, tmp_path, kind):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "precious.txt").write_text("user data")
    if kind == "link":
        (run / "data").symlink_to(outside)
    else:
        (run / "data").write_text("a user's file")
    before, file_before = snapshot(outside), snapshot(run)
    with pytest.raises(PodiumError, match="symbolic link" if kind == "link" else "is a file"):
        run_plan(make_plan(str(recipe), output=str(run)))
    assert snapshot(outside) == before and snapshot(run) == file_before and CALLS == []


def test_stale_stage_folder_with_a_link_inside_is_deleted_without_following_it(recipe, tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("user data")
    run_plan(make_plan(str(recipe), output=str(run)))
    (run / "data" / "escape").symlink_to(outside)  # planted inside a folder podium made
    before = snapshot(outside)
    run_plan(make_plan(str(recipe), ["data.value=5"], output=str(run)))
    assert snapshot(outside) == before and not os.path.lexists(run / "data" / "escape")


def test_a_users_report_files_in_a_non_run_dir_are_not_overwritten(recipe, project):
    (project / "report.md").write_text("my notes")
    plan = make_plan(str(recipe), output=str(project))
    assert any("already holds report.md" in p for p in plan_problems(plan))
    with pytest.raises(PodiumError, match="not a podium run dir but already holds report.md"):
        run_plan(plan)
    assert (project / "report.md").read_text() == "my notes"


def test_a_podium_run_dir_is_written_as_before(recipe, tmp_path):
    run = tmp_path / "run"
    run_plan(make_plan(str(recipe), output=str(run)))
    assert plan_problems(make_plan(str(recipe), ["first.value=9"], output=str(run))) == []


@pytest.mark.parametrize("command", ["card", "report"])
def test_card_and_report_refuse_a_directory_that_is_not_a_run(tmp_path, capsys, command):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "README.md").write_text("my readme")
    (folder / "report.md").write_text("my report")
    before = snapshot(folder)
    assert main([command, str(folder)]) == 2  # old code: both files overwritten
    assert "is not a podium run dir" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_card_of_a_run_dir_is_written(recipe, tmp_path):
    run = tmp_path / "run"
    run_plan(make_plan(str(recipe), output=str(run)))
    assert main(["card", str(run)]) == 0
    assert (run / "README.md").exists() and (run / "report.md").exists()


def test_missing_local_inputs_stop_the_run_before_anything_runs(tmp_path, capsys):
    """A local dataset path that does not exist was found only when its stage ran (after the ones before it)."""
    CALLS.clear()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: a, kind: test_safe}\n"
                      "  - {name: b, kind: sft, model: org/model, data: data/missing.jsonl}\n")
    assert main(["run", str(recipe), "--output", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "r.yaml:3: stage 'b': 'data/missing.jsonl' does not exist" in err
    with pytest.raises(PodiumError, match="does not exist"):
        run_plan(make_plan(str(recipe), output=str(tmp_path / "run")))
    assert CALLS == [] and not (tmp_path / "run" / "a").exists()
    # Hub ids and bare names are the Hub preflight's business, not a missing file.
    recipe.write_text("stages:\n  - {name: b, kind: sft, model: org/model, data: org/dataset}\n")
    assert make_plan(str(recipe), output=str(tmp_path / "run")).stages[0].missing == []
