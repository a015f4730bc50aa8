"""One podium process per run dir (issue 13 item 3).

The probe: two `podium run`s into the same output dir at once corrupted it (one died on a checkpoint
rename, metrics.jsonl lines out of order, both wrote the same fixed temporary names). Now the second
stops at once naming the first (PID, command, start time); a lock left by a killed process is recovered
with a log line; `podium <stage> CONFIG` locks its output folder the same way.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.security.planting import snapshot

from podium.cli import main
from podium.errors import PodiumError
from podium.files import temp_path
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.run_lock import LOCK_FILE, RunDirLock
from podium.stages import StageConfig, stage

SRC = str(Path(__file__).parents[2] / "src")
CALLS: list[str] = []


class LockedConfig(StageConfig):
    value: int = 0


@stage("test_locked", LockedConfig)
def locked_stage(cfg, ctx):
    CALLS.append(ctx.name)
    return {"value": cfg.value}


def hold_lock(folder: Path, beside: bool = False) -> subprocess.Popen:
    """Another process that takes the lock of `folder` (as a running `podium run` does) and keeps it."""
    code = textwrap.dedent(f"""
        import sys, time
        from podium.run_lock import RunDirLock
        lock = RunDirLock({str(folder)!r}, command="podium run other.yaml", beside={beside}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(folder, beside=False):
        procs.append(hold_lock(folder, beside))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def recipe(tmp_path) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text("stages:\n  - {name: a, kind: test_locked, value: 1}\n")
    CALLS.clear()
    return p


def test_second_run_into_a_locked_run_dir_stops_at_once(tmp_path, holder):
    run = tmp_path / "run"
    proc = holder(run)
    plan = make_plan(str(recipe(tmp_path)), output=str(run))
    with pytest.raises(PodiumError) as e:  # old code: ran alongside the other process
        run_plan(plan)
    assert f"run dir {run} is in use by PID {proc.pid} (podium run other.yaml, started " in str(e.value)
    assert CALLS == [] and sorted(p.name for p in run.iterdir()) == [LOCK_FILE]


def test_cli_run_names_the_holder(tmp_path, holder, capsys):
    run = tmp_path / "run"
    proc = holder(run)
    assert main(["run", str(recipe(tmp_path)), "--output", str(run)]) == 2
    assert f"is in use by PID {proc.pid}" in capsys.readouterr().err


def test_stage_alone_into_a_locked_stage_folder(tmp_path, holder, capsys):
    out = tmp_path / "tasks"
    proc = holder(out, beside=True)  # an output folder is locked from beside it (it may be a model folder)
    cfg = tmp_path / "tasks.yaml"
    cfg.write_text("task: arithmetic\ntrain: 3\ntest: 2\n")
    assert main(["tasks", str(cfg), "--output", str(out)]) == 2
    assert f"stage folder {out} is in use by PID {proc.pid}" in capsys.readouterr().err
    assert not (out / "train.jsonl").exists()
    proc.kill()
    proc.wait()
    assert main(["tasks", str(cfg), "--output", str(out)]) == 0 and (out / "train.jsonl").exists()
    assert not (out / LOCK_FILE).exists() and not list(out.glob("*podium-lock"))  # the output folder holds no lock file


def test_merge_into_an_output_in_use(tmp_path, holder, capsys):
    out = tmp_path / "merged"
    proc = holder(out, beside=True)
    cfg = tmp_path / "m.yml"
    cfg.write_text("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: "
                   "{weight: 1}}]\n")
    assert main(["merge", str(cfg), str(out)]) == 1
    assert f"merge output {out} is in use by PID {proc.pid}" in capsys.readouterr().err


def test_stale_lock_of_a_killed_process_is_recovered_with_a_log_line(tmp_path, holder, caplog):
    run = tmp_path / "run"
    proc = holder(run)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: the lock file still names it
    proc.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid
    with caplog.at_level(logging.WARNING, logger="podium"):
        report = run_plan(make_plan(str(recipe(tmp_path)), output=str(run)))
    assert report["stages"][0]["status"] == "ran"
    assert f"recovered the stale lock of PID {proc.pid}" in caplog.text
    assert (run / LOCK_FILE).read_text() == ""  # released cleanly: the next run logs nothing


def test_lock_in_the_same_process_is_exclusive_and_released(tmp_path):
    with RunDirLock(tmp_path / "run"):
        with pytest.raises(PodiumError, match=f"in use by PID {os.getpid()}"):
            RunDirLock(tmp_path / "run").acquire()
    with RunDirLock(tmp_path / "run"):  # released by the block above
        pass


def test_a_lock_file_that_is_a_link_or_not_podiums_is_not_written(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("user data")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).symlink_to(outside / "precious.txt")
    before = snapshot(outside)
    with pytest.raises(PodiumError, match="is a symbolic link"):
        RunDirLock(run).acquire()
    assert snapshot(outside) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / LOCK_FILE).write_text("a user's notes")
    with pytest.raises(PodiumError, match="not a podium lock file"):
        RunDirLock(other).acquire()
    assert (other / LOCK_FILE).read_text() == "a user's notes"


SLOW_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from podium.cli import main
    from podium.stages import StageConfig, stage

    class SlowConfig(StageConfig):
        gate: str

    @stage("test_slow", SlowConfig)
    def slow(cfg, ctx):
        Path(cfg.gate, "started").touch()
        for _ in range(1200):  # until the test opens the gate (at most 2 minutes)
            if Path(cfg.gate, "open").exists():
                break
            time.sleep(0.1)
        return {"waited": 1.0}

    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.integration  # two podium processes: ~40 s on the shared machine
def test_a_second_podium_run_while_the_first_runs_is_refused(tmp_path):
    """The probe with real `podium run` processes: the second starts while the first is inside a stage."""
    run, gate = tmp_path / "run", tmp_path / "gate"
    gate.mkdir()
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"stages:\n  - {{name: slow, kind: test_slow, gate: {gate}}}\n")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", SLOW_RUN, "run", str(cfg), "--output", str(run), "--no-progress"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if (gate / "started").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert (gate / "started").exists(), first.communicate()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr  # old code: both ran in the same run dir
        assert f"run dir {run} is in use by PID {first.pid}" in second.stderr
    finally:
        (gate / "open").touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    report = json.loads((run / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["ran"]


def test_temporary_names_are_unique_per_process(tmp_path):
    """Two processes writing one file (report.json) never share a temporary file (it was `report.json.tmp`)."""
    name = temp_path(tmp_path / "report.json").name
    assert str(os.getpid()) in name and name.startswith(".")
