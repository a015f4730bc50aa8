"""One lock per folder, whoever writes it (issue 26, item 2).

The probe: `podium run` locked DIR/.podium-lock while `podium merge` and `podium sft` locked
`.NAME.podium-lock` beside their output, so a command run alone published into a stage folder that a
running recipe was training. Now the run also holds each stage folder's lock, commands run alone check the
locks above their output, and `podium card` takes the run dir's lock. And two processes publishing one
folder at once both finish (the flaky `test_two_concurrent_publications_both_finish_complete`: one renamed
its temp folder onto the folder the other had just published).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.security.planting import snapshot

from podium.cli import main
from podium.errors import PodiumError
from podium.models import publish
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.stages import StageConfig, stage

SRC = str(Path(__file__).parents[2] / "src")
CALLS: list[str] = []


class HeldConfig(StageConfig):
    value: int = 0


@stage("test_held", HeldConfig)
def held_stage(cfg, ctx):
    CALLS.append(ctx.name)
    return {"value": cfg.value}


def hold(folder: Path, beside: bool) -> subprocess.Popen:
    """Another process holding `folder`'s lock, as a running `podium run` (run dir) or `podium merge` (beside)."""
    code = textwrap.dedent(f"""
        import time
        from podium.run_lock import RunDirLock
        RunDirLock({str(folder)!r}, command="podium other", beside={beside}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def holder():
    procs = []
    yield lambda folder, beside=False: procs.append(hold(folder, beside)) or procs[-1]
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def merge_cfg(tiny_dir, tmp_path):
    a = tmp_path / "a"
    shutil.copytree(tiny_dir, a)
    cfg = tmp_path / "m.yml"
    cfg.write_text(f"merge_method: passthrough\nmodels:\n  - model: {a}\n")
    return cfg


def test_merge_into_a_stage_folder_of_a_running_run_is_refused(tmp_path, holder, merge_cfg, capsys):
    run = tmp_path / "run"
    proc = holder(run)  # `podium run` holds the run dir
    assert main(["merge", str(merge_cfg), str(run / "sft")]) != 0  # old code: published into it
    assert f"lies inside run dir {run}, which is in use by PID {proc.pid}" in capsys.readouterr().err
    assert not (run / "sft").exists()


def test_a_stage_alone_into_a_stage_folder_of_a_running_run_is_refused(tmp_path, holder, capsys):
    run = tmp_path / "run"
    proc = holder(run)
    cfg = tmp_path / "tasks.yaml"
    cfg.write_text("task: arithmetic\ntrain: 3\ntest: 2\n")
    assert main(["tasks", str(cfg), "--output", str(run / "tasks")]) == 2
    assert f"in use by PID {proc.pid}" in capsys.readouterr().err and not (run / "tasks").exists()


def test_a_run_is_refused_while_a_command_writes_one_of_its_stage_folders(tmp_path, holder):
    run = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: a, kind: test_held}\n  - {name: b, kind: test_held}\n")
    proc = holder(run / "b", beside=True)  # `podium merge CFG run/b` is writing stage b's folder
    CALLS.clear()
    with pytest.raises(PodiumError, match=rf"stage folder {run / 'b'} is in use by PID {proc.pid}"):
        run_plan(make_plan(str(recipe), output=str(run)))
    assert CALLS == []  # not even stage a ran


def test_card_and_report_wait_for_no_run(tmp_path, holder, capsys):
    from tests.unit.cards_run_fixture import make_run

    run = make_run(tmp_path / "cards")
    before = snapshot(run)
    proc = holder(run)
    for argv in (["card", str(run)], ["report", str(run)]):
        assert main(argv) == 2
        assert f"is in use by PID {proc.pid}" in capsys.readouterr().err
    after = snapshot(run)
    after.pop(".podium-lock")
    before.pop(".podium-lock", None)
    assert after == before


def test_a_publication_that_finds_the_folder_published_meanwhile_swaps_instead(tmp_path, monkeypatch):
    """The race of the flaky test, made deterministic: B checks that `out` does not exist, A publishes `out`,
    then B renames its temp folder onto it (old code: OSError, directory not empty)."""
    out = tmp_path / "model"
    tmp_a, tmp_b = tmp_path / ".model.a", tmp_path / ".model.b"
    for tmp, tag in ((tmp_a, "a"), (tmp_b, "b")):
        tmp.mkdir()
        (tmp / "model.safetensors").write_text(tag)
    real_rename = os.rename
    raced = []

    def rename(src, dst):
        if Path(src) == tmp_b and not raced:  # A wins the race between B's check and B's rename
            raced.append(True)
            publish.publish_folder(tmp_a, out, publish.MODEL_FILES)
        return real_rename(src, dst)

    monkeypatch.setattr(publish.os, "rename", rename)
    publish.publish_folder(tmp_b, out, publish.MODEL_FILES)
    assert raced and (out / "model.safetensors").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
