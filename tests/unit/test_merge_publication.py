"""Atomic publication of output folders (podium.models.publish), probed as issue 13 found it broken.

The probe that failed before: a killed `podium merge` into an existing output left it without
weights in 3 of 5 kills (old files deleted before the new ones moved in, one by one), and its
temp folders were never cleaned. Here a child process publishes a new model over an old one
and is killed with SIGKILL right after each filesystem step it takes (every rename, link,
unlink, mkdir, ...; each step is slowed so the kill lands inside it); after every kill the
folder must hold the complete old or the complete new model, with the stage folder's other
files intact, and the next run must clean up what the killed one left beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podium.errors import PodiumError
from podium.models import publish
from podium.models.publish import MODEL_FILES, recover, staging

SRC = str(Path(__file__).resolve().parents[2] / "src")

OLD = {"model-00001-of-00002.safetensors": "old shard 1", "model-00002-of-00002.safetensors": "old shard 2",
       "model.safetensors.index.json": "old index", "config.json": "old config", "tokenizer.json": "old tok"}
NEW = {"model.safetensors": "new weights", "config.json": "new config", "tokenizer.json": "new tok"}
# what a pipeline stage keeps in its folder next to the model: must survive every publication
ARTIFACTS = {"stage.json": '{"key": "abc"}', "metrics.jsonl": '{"step": 1}\n', "samples/part-0.jsonl": "{}\n"}


def make_stage_folder(out: Path) -> None:
    """A stage folder holding an old model that podium published (its `.podium-published` lists it)."""
    for name, text in {**OLD, **ARTIFACTS}.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    (out / publish.PUBLISHED).write_text(json.dumps(sorted(OLD)))


def contents(folder: Path) -> dict[str, str]:
    """Every file's text, podium's list of what it published aside."""
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*")
            if p.is_file() and p.name != publish.PUBLISHED}


def state(out: Path) -> str:
    """'old' or 'new' when `out` holds exactly that model plus every artifact; else a description."""
    if not out.is_dir():
        return "missing"
    got = contents(out)
    for name, files in (("old", OLD), ("new", NEW)):
        if got == {**files, **ARTIFACTS}:
            return name
    return f"mixed: {sorted(got)}"


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from podium.models import publish

    out, stop_at, phase, exchange = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
    new = {"model.safetensors": "new weights", "config.json": "new config", "tokenizer.json": "new tok"}
    count = 0

    def traced(name, fn):
        def step(*args, **kwargs):
            global count
            count += 1
            print("STEP", count, name, args[:2], flush=True)
            if count == stop_at and phase == "before":
                print("KILL ME", flush=True)
                time.sleep(60)
            result = fn(*args, **kwargs)
            if count == stop_at and phase == "after":
                print("KILL ME", flush=True)
                time.sleep(60)
            return result
        return step

    if not exchange:
        publish._renameat2 = lambda: None  # as on a kernel or filesystem without RENAME_EXCHANGE
    for name in ("rename", "replace", "link", "unlink", "rmdir", "mkdir", "symlink"):
        setattr(os, name, traced(name, getattr(os, name)))
    publish.exchange = traced("exchange", publish.exchange)
    with publish.staging(out, stale_globs=publish.MODEL_FILES) as tmp:
        for name, text in new.items():
            (tmp / name).write_text(text)
    print("DONE", flush=True)
""")


def run_child(out: Path, *, stop_at: int = 0, phase: str = "before", exchange: bool = True) -> list[str]:
    """Publish NEW over `out` in a child process; SIGKILL it just before or after its `stop_at`-th
    filesystem step (0: let it finish). Returns the steps it printed."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, SRC, str(out), str(stop_at), phase, "1" if exchange else "0"],
                            stdout=subprocess.PIPE, text=True)
    steps = []
    for line in proc.stdout:
        steps.append(line.strip())
        if line.startswith("KILL ME"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    proc.wait()  # reaped: its PID is dead for the next run's stale-temp check
    return steps


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-pair"])
def test_kill_9_at_every_step_leaves_old_or_new_model_and_next_run_cleans_up(tmp_path, exchange):
    if exchange and publish._renameat2() is None:
        pytest.skip("no renameat2 on this platform")
    out = tmp_path / "stage"
    out.mkdir()
    make_stage_folder(out)
    full = run_child(out, exchange=exchange)
    assert full[-1] == "DONE" and state(out) == "new" and leftovers(out) == []
    steps = [s for s in full if s.startswith("STEP")]
    assert len(steps) >= 8, steps  # mkdir, the carried links, the swap, the clean-up: a sequence to cut
    seen = set()
    for k in range(1, len(steps) + 1):
        for phase in ("before", "after"):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make_stage_folder(out)
            run_child(out, stop_at=k, phase=phase, exchange=exchange)
            now = state(out)
            where = f"killed {phase} {steps[k - 1]}"
            if exchange:
                # one atomic swap: no instant without a complete model
                assert now in ("old", "new"), f"{where}: {now}"
            else:
                # two renames: a kill between them leaves no `out`, which the next run puts back
                assert now in ("old", "new", "missing"), f"{where}: {now}"
            seen.add(now)
            recover(out)
            assert state(out) in ("old", "new"), f"after recovering from a kill {where}: {state(out)}"
            assert leftovers(out) == [], f"after recovering from a kill {where}"
    assert {"old", "new"} <= seen  # kills landed both before and after the swap


def test_publish_keeps_stage_artifacts_and_drops_stale_model_files(tmp_path):
    out = tmp_path / "stage"
    out.mkdir()
    make_stage_folder(out)
    (out / "link-to-samples").symlink_to("samples")
    inode = (out / "metrics.jsonl").stat().st_ino
    with staging(out, stale_globs=MODEL_FILES) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".stage.podium-tmp-")
        for name, text in NEW.items():
            (tmp / name).write_text(text)
    got = contents(out)
    assert got == {**NEW, **ARTIFACTS}
    assert (out / "link-to-samples").is_symlink()
    assert (out / "metrics.jsonl").stat().st_ino == inode  # carried as a hard link, not copied
    assert leftovers(out) == []


def test_error_inside_staging_leaves_output_untouched_and_no_temp(tmp_path):
    out = tmp_path / "stage"
    out.mkdir()
    make_stage_folder(out)
    with pytest.raises(RuntimeError, match="boom"), staging(out, stale_globs=MODEL_FILES) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("boom")
    assert state(out) == "old" and leftovers(out) == []


def test_temp_names_are_unique_per_process_and_call(tmp_path):
    out = tmp_path / "model"
    names = {publish.sibling(out, publish.TMP).name for _ in range(20)}
    assert len(names) == 20 and all(f"-{os.getpid()}-" in n for n in names)
    script = f"import sys; sys.path.insert(0, {SRC!r}); from pathlib import Path; from podium.models import publish; " \
             f"print(publish.sibling(Path({str(out)!r}), publish.TMP).name)"
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert other not in names and f"-{os.getpid()}-" not in other


def test_two_concurrent_publications_both_finish_complete(tmp_path):
    """Four processes publishing into one folder at once (issue 13's fixed `*.tmp-save` clash; each one's cleanup
    of dead processes' temps once stat-ed a live temp that had just been renamed away): each writes its own temp
    folder, all succeed, and the folder ends complete, with nothing left beside it."""
    out = tmp_path / "model"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {SRC!r})
        from podium.models import publish
        for i in range(60):
            with publish.staging({str(out)!r}, stale_globs=publish.MODEL_FILES) as tmp:
                (tmp / "model.safetensors").write_text(sys.argv[1] * 1000)
                (tmp / "config.json").write_text(sys.argv[1])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], stderr=subprocess.PIPE, text=True) for tag in "abcd"]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    tag = (out / "config.json").read_text()
    assert (out / "model.safetensors").read_text() == tag * 1000
    assert leftovers(out) == []


def test_recover_restores_the_old_folder_of_a_run_killed_between_its_two_renames(tmp_path):
    out = tmp_path / "model"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    host = publish._host()
    old = tmp_path / f".model.podium-old-{host}-{pid}-0000aaaa"
    old.mkdir()
    (old / "model.safetensors").write_text("old")
    half = tmp_path / f".model.podium-tmp-{host}-{pid}-0000bbbb"
    half.mkdir()
    (half / "model.safetensors").write_text("half-written")
    legacy = [tmp_path / f".model.tmp-merge-{pid}", tmp_path / "model.tmp-save"]
    for p in legacy:
        p.mkdir()
    alive = tmp_path / f".model.podium-tmp-{host}-{os.getpid()}-0000cccc"  # a live run's temp: not touched
    alive.mkdir()
    other_host = tmp_path / f".model.podium-tmp-elsewhere-{pid}-0000dddd"  # can't tell if alive: not touched
    other_host.mkdir()
    recover(out)
    assert (out / "model.safetensors").read_text() == "old"
    assert leftovers(out) == sorted([alive.name, other_host.name])
    assert not any(p.exists() for p in legacy)


@pytest.mark.parametrize("kind", ["file", "parent-is-file"])
def test_output_that_is_a_file_is_refused_before_work(tmp_path, kind):
    f = tmp_path / "weights.bin"
    f.write_text("user data")
    out = f if kind == "file" else f / "merged"
    with pytest.raises(PodiumError, match="is a file|not a folder"), staging(out):
        pytest.fail("the block must not run")
    assert f.read_text() == "user data"


def test_read_only_output_is_refused_before_work(tmp_path):
    out = tmp_path / "stage"
    out.mkdir()
    make_stage_folder(out)
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes (see the merge test's read-only mount)")
        with pytest.raises(PodiumError, match="not writable"), staging(out):
            pytest.fail("the block must not run")
    finally:
        out.chmod(0o755)
    assert state(out) == "old"


def test_save_model_publishes_atomically_into_a_stage_folder(tmp_path):
    from podium.models.io import load_model, save_model
    from podium.models.tiny import build_tiny_model

    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    out = tmp_path / "sft"
    out.mkdir()
    record = {"name": "sft", "kind": "sft", "key": "k", "deps": [], "config": {}}  # podium's stage.json
    (out / "stage.json").write_text(json.dumps(record))
    (out / "model-00001-of-00009.safetensors").write_text("stale shard of an older save")
    save_model(model, tok, out)
    assert json.loads((out / "stage.json").read_text()) == record
    assert sorted(p.name for p in out.glob("model*.safetensors*")) == ["model.safetensors"]
    assert load_model(out).config.num_hidden_layers == 1
    assert leftovers(out) == []


def test_symlinked_output_replaces_the_folder_it_points_to(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    make_stage_folder(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with staging(link, stale_globs=MODEL_FILES) as tmp:
        for name, text in NEW.items():
            (tmp / name).write_text(text)
    assert link.is_symlink() and state(real) == "new" and leftovers(real) == []


def test_the_current_folder_is_refused_as_output(tmp_path, monkeypatch):
    """Swapping the folder the process stands in would leave it in a deleted folder."""
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), str(tmp_path.parent)):
        with pytest.raises(PodiumError, match="current folder"), staging(out):
            pytest.fail("the block must not run")
