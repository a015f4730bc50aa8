"""Skip, rerun and resume logic of the pipeline, with cheap stage kinds made for the test."""

import json
import textwrap

import pytest

from podium.files import write_json
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.refs import DataRef
from podium.stages import StageConfig, stage

CALLS: list[str] = []


class EchoConfig(StageConfig):
    value: int = 0
    source: DataRef | None = None  # a typed reference: its file's content enters the stage's key
    fail: bool = False


@stage("test_echo", EchoConfig, outputs={"out": "out.json"})
def echo(cfg, ctx):
    CALLS.append(ctx.name)
    if cfg.fail:
        raise RuntimeError("boom")
    upstream = json.loads(open(cfg.source).read())["value"] if cfg.source else 0
    write_json(ctx.out_dir / "out.json", {"value": cfg.value + upstream})
    return {"value": cfg.value + upstream}


RECIPE = """\
name: echo
stages:
  - {name: a, kind: test_echo, value: 1}
  - {name: b, kind: test_echo, value: 10, source: "@a"}
  - {name: c, kind: test_echo, value: 100, source: "@b.out"}
"""


@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(RECIPE))
    CALLS.clear()
    return p


def go(recipe, tmp_path, *ov):
    plan = make_plan(str(recipe), list(ov), output=str(tmp_path / "run"))
    return plan, run_plan(plan, show_progress=False)


def test_run_then_cached(recipe, tmp_path):
    _, report = go(recipe, tmp_path)
    assert CALLS == ["a", "b", "c"]
    assert [s["metrics"]["value"] for s in report["stages"]] == [1, 11, 111]
    assert json.loads((tmp_path / "run" / "report.json").read_text())["stages"][2]["status"] == "ran"
    CALLS.clear()
    plan, report = go(recipe, tmp_path)
    assert CALLS == [] and [s.status for s in plan.stages] == ["cached"] * 3
    assert [s["status"] for s in report["stages"]] == ["cached"] * 3
    assert report["stages"][2]["metrics"]["value"] == 111


def test_change_reruns_stage_and_downstream_only(recipe, tmp_path):
    go(recipe, tmp_path)
    CALLS.clear()
    plan, report = go(recipe, tmp_path, "b.value=20")
    assert [s.status for s in plan.stages] == ["cached", "run", "run"]
    assert CALLS == ["b", "c"] and report["stages"][2]["metrics"]["value"] == 121


def test_changed_input_file_reruns(recipe, tmp_path):
    src = tmp_path / "in.json"
    write_json(src, {"value": 5})
    recipe.write_text(RECIPE.replace("value: 1}", f"value: 1, source: {src}}}"))
    go(recipe, tmp_path)
    write_json(src, {"value": 6})
    CALLS.clear()
    _, report = go(recipe, tmp_path)
    assert CALLS == ["a", "b", "c"] and report["stages"][0]["metrics"]["value"] == 7


def test_failure_leaves_no_marker_and_rerun_resumes(recipe, tmp_path):
    with pytest.raises(RuntimeError):
        go(recipe, tmp_path, "c.fail=true")
    assert (tmp_path / "run" / "b" / ".podium-done").exists()
    assert not (tmp_path / "run" / "c" / ".podium-done").exists()
    CALLS.clear()
    plan = make_plan(str(recipe), ["c.fail=true"], output=str(tmp_path / "run"))
    assert [s.status for s in plan.stages] == ["cached", "cached", "resume"]


def test_dry_run_runs_nothing(recipe, tmp_path):
    from podium.pipeline import run_recipe

    plan = run_recipe(str(recipe), output=str(tmp_path / "run"), dry_run=True)
    assert CALLS == [] and not (tmp_path / "run").exists()
    assert [s.deps for s in plan.stages] == [[], ["a"], ["b"]]


def test_moved_run_dir_stays_cached(recipe, tmp_path):
    import shutil

    go(recipe, tmp_path)
    shutil.copytree(tmp_path / "run", tmp_path / "moved")
    CALLS.clear()
    plan = make_plan(str(recipe), output=str(tmp_path / "moved"))
    assert [s.status for s in plan.stages] == ["cached"] * 3


def test_until_runs_a_prefix_and_the_rest_later_reuses_it(recipe, tmp_path):
    from podium.pipeline import run_recipe

    report = run_recipe(str(recipe), output=str(tmp_path / "run"), show_progress=False, until="b")
    assert CALLS == ["a", "b"] and [s["name"] for s in report["stages"]] == ["a", "b"]
    CALLS.clear()
    _, report = go(recipe, tmp_path)
    assert CALLS == ["c"] and [s["status"] for s in report["stages"]] == ["cached", "cached", "ran"]


def test_until_still_validates_later_stages_and_names_unknown_stages(recipe, tmp_path):
    from podium.errors import ConfigError

    with pytest.raises(ConfigError, match="no such stage"):
        make_plan(str(recipe), output=str(tmp_path / "run"), until="z")
    with pytest.raises(ConfigError, match=r"r.yaml:5: stage 'c': key 'value'"):
        make_plan(str(recipe), ["c.value=oops"], output=str(tmp_path / "run"), until="a")
    assert CALLS == []
