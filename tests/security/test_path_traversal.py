"""Path traversal through recipe names, stage names, output names and `@refs` (issue 13).

The probe: a recipe `name: ..` without `--output` ran into runs/.. (the working directory), where the
pipeline writes report.json/report.md and deletes stage folders. Each name below that tries to leave the
run dir is refused when the plan is made, and a snapshot of the folders around the run dir is unchanged.
"""

from __future__ import annotations

import pytest
from tests.security.planting import snapshot

from podium.cli import main
from podium.errors import ConfigError, PodiumError
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.stages import StageConfig, stage

CALLS: list[str] = []


class TraversalConfig(StageConfig):
    source: str | None = None


@stage("test_traversal", TraversalConfig, outputs={"out": "out.json", "model": "."})
def traversal_stage(cfg, ctx):
    CALLS.append(ctx.name)
    (ctx.out_dir / "out.json").write_text("{}")
    return {}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """cwd = tmp/work with runs/ inside; precious files in tmp/work and beside it."""
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    (work / "report.md").write_text("the user's report")
    (work / "a").mkdir()
    (work / "a" / "notes.txt").write_text("the user's notes")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "precious.txt").write_text("user data")
    monkeypatch.chdir(work)
    CALLS.clear()
    return tmp_path


def around(world) -> tuple:
    """Everything in the working directory and beside it (the recipes live in their own folder)."""
    return snapshot(world / "work"), snapshot(world / "elsewhere")


def plan_recipe(world, text: str, **kw):
    recipe = world / "recipes" / "r.yaml"
    recipe.parent.mkdir(exist_ok=True)
    recipe.write_text(text)
    return make_plan(str(recipe), **kw)


@pytest.mark.parametrize("name", ["..", "../elsewhere", "/tmp", "a/b", ".", "../../..", "x/../../.."])
def test_recipe_names_that_leave_runs_are_refused(world, name):
    before = around(world)
    with pytest.raises(ConfigError, match="recipe name must be"):
        plan = plan_recipe(world, f"name: {name!r}\nstages:\n  - {{name: a, kind: test_traversal}}\n")
        run_plan(plan)  # old code: `name: ..` ran into runs/.. = the working directory
    assert around(world) == before and CALLS == []


def test_a_recipe_file_whose_stem_is_dot_dot_needs_a_name_or_output(world):
    recipe = world / "...yaml"  # stem ".."
    recipe.write_text("stages:\n  - {name: a, kind: test_traversal}\n")
    with pytest.raises(ConfigError, match="not one folder"):
        make_plan(str(recipe))
    assert make_plan(str(recipe), output=str(world / "run")).run_dir == world / "run"


def test_cli_probe_name_dot_dot(world, capsys):
    before = around(world)
    recipe = world / "recipes" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text("name: ..\nstages:\n  - {name: a, kind: test_traversal}\n")
    assert main(["run", str(recipe)]) == 2
    assert "recipe name must be" in capsys.readouterr().err
    assert around(world) == before


@pytest.mark.parametrize("name", ["..", "../a", "a/b", "/abs", ".hidden", "report", ""])
def test_stage_names_that_leave_the_run_dir_or_collide_with_it_are_refused(world, name):
    before = around(world)
    with pytest.raises(ConfigError, match="stage name|each stage needs"):
        plan_recipe(world, f"stages:\n  - {{name: {name!r}, kind: test_traversal}}\n", output=str(world / "run"))
    assert around(world) == before


@pytest.mark.parametrize("ref", ["@../a", "@a/../../elsewhere", "@a.../../x", "@a.out/../../x", "@/etc"])
def test_refs_that_leave_the_run_dir_are_refused(world, ref):
    before = around(world)
    with pytest.raises(ConfigError, match="refers to no earlier stage|has no output"):
        plan_recipe(world, "stages:\n  - {name: a, kind: test_traversal}\n"
                           f"  - {{name: b, kind: test_traversal, source: {ref!r}}}\n", output=str(world / "run"))
    assert around(world) == before


def test_refs_resolve_inside_the_run_dir(world):
    plan = plan_recipe(world, "stages:\n  - {name: a, kind: test_traversal}\n"
                              "  - {name: b, kind: test_traversal, source: '@a.out'}\n", output=str(world / "run"))
    assert plan.stages[1].config.source == str(world / "run" / "a" / "out.json")


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x"])
def test_a_stage_kind_cannot_declare_an_output_outside_its_folder(rel):
    with pytest.raises(RuntimeError, match="leaves the stage folder"):
        stage(f"test_bad_output_{abs(hash(rel))}", TraversalConfig, outputs={"out": rel})(traversal_stage)


def test_a_run_through_a_stage_link_touches_nothing_outside(world):
    """A stage folder replaced by a link to a folder elsewhere: neither deleted, written nor resumed."""
    run = world / "run"
    plan_text = "stages:\n  - {name: a, kind: test_traversal}\n"
    run_plan(plan_recipe(world, plan_text, output=str(run)))
    # Move the finished stage elsewhere and link it back: a resume or rerun would write through the link.
    (run / "a").rename(world / "elsewhere" / "a")
    (run / "a").symlink_to(world / "elsewhere" / "a")
    (world / "elsewhere" / "a" / ".podium-done").unlink()  # not finished: the plan would resume it
    before = snapshot(world / "elsewhere")
    CALLS.clear()
    with pytest.raises(PodiumError, match="symbolic link"):
        run_plan(plan_recipe(world, plan_text, output=str(run)))
    assert snapshot(world / "elsewhere") == before and CALLS == []
