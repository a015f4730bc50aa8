"""`podium merge` into an existing output, probed as issue 13 did: kill -9, bad output paths, stage folders.

Before: 3 of 5 kills left the output without `model.safetensors`, temp folders stayed forever,
and a read-only output or an output path that is a file failed only after every tensor had
been computed. Here each probe runs against `run_merge`, in a child process where it has to be.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from podium.errors import PodiumError
from podium.merging import executor
from podium.merging.config import parse_config
from podium.merging.executor import run_merge
from podium.models.io import save_model
from podium.models.tiny import build_tiny_model

SMALL = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 3, "num_heads": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return [str(save_model(*build_tiny_model(**SMALL, seed=seed), root / f"m{seed}")) for seed in range(2)]


def slerp(models, t: float) -> dict:
    return {"merge_method": "slerp", "base_model": models[0], "parameters": {"t": t},
            "models": [{"model": models[0]}, {"model": models[1]}]}


def weights(folder: Path) -> dict[str, torch.Tensor] | None:
    """Every tensor of a merged folder, or None when its weights are missing or unreadable."""
    files = sorted(folder.glob("model*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    if not files:
        return None
    try:
        out = {}
        for f in files:
            out.update(load_file(str(f)))
        return out
    except Exception:  # noqa: BLE001 - a truncated or missing file: not a complete model
        return None


def same(a: dict | None, b: dict) -> bool:
    return a is not None and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def never_compute(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a tensor was computed before the output path was checked")

    monkeypatch.setattr(executor, "merge_tensor", fail)


@pytest.mark.parametrize("kind", ["file", "parent-is-file"])
def test_output_path_that_is_a_file_fails_before_any_tensor(models, tmp_path, monkeypatch, kind):
    never_compute(monkeypatch)
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    out = f if kind == "file" else f / "merged"
    with pytest.raises(PodiumError, match=r"notes.txt (exists and is not a folder|is a file)"):
        run_merge(parse_config(slerp(models, 0.5)), out)
    assert f.read_text() == "mine" and leftovers(f) == []


RO_CHILD = textwrap.dedent("""
    import json, sys
    from podium.errors import PodiumError
    from podium.merging import executor
    from podium.merging.config import parse_config

    def fail(*args, **kwargs):
        print("COMPUTED", flush=True)
        sys.exit(99)

    executor.merge_tensor = fail
    try:
        executor.run_merge(parse_config(json.loads(sys.argv[1])), sys.argv[2])
    except PodiumError as e:
        print(f"PodiumError: {e}", flush=True)
        sys.exit(3)
    sys.exit(0)
""")


@pytest.mark.parametrize("kind", ["existing-output", "new-output-in-read-only-folder"])
def test_read_only_output_fails_before_any_tensor(models, tmp_path, kind):
    """A read-only output: as root (who ignores permissions) on a read-only bind mount, else by chmod."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if kind == "existing-output":
        out = ro
        (out / "stage.json").write_text("{}")
    else:
        out = ro / "merged"
    cmd = [sys.executable, "-c", RO_CHILD, json.dumps(slerp(models, 0.5)), str(out)]
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("root without unshare: cannot make a folder read-only")
        mount = f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro}"
        cmd = ["unshare", "-m", "sh", "-c", f'{mount} || exit 42; exec "$@"', "sh", *cmd]
    else:
        ro.chmod(0o555)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        ro.chmod(0o755)
    if res.returncode == 42:
        pytest.skip(f"cannot mount read-only here: {res.stderr.strip()}")
    assert "COMPUTED" not in res.stdout
    assert res.returncode == 3, res.stdout + res.stderr
    assert "not writable" in res.stdout or "cannot write" in res.stdout or "cannot create" in res.stdout, res.stdout
    assert str(out) in res.stdout


def test_merge_stage_rerun_keeps_the_stage_folder_files(models, tmp_path):
    """A merge stage writes its model into the stage folder itself, next to the pipeline's files."""
    from podium.stages import run_stage

    cfg_file = tmp_path / "m.yml"
    cfg_file.write_text(json.dumps(slerp(models, 0.3)))
    out = tmp_path / "stage"
    out.mkdir()
    record = '{"name": "stage", "kind": "merge", "key": "k", "deps": [], "config": {}}'  # podium's stage.json
    (out / "stage.json").write_text(record)
    (out / "model-00001-of-00002.safetensors").write_text("an older, sharded model")
    run_stage("merge", {"config_file": str(cfg_file)}, out)
    assert (out / "stage.json").read_text() == record
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    assert weights(out) is not None and leftovers(out) == []


KILL_CHILD = textwrap.dedent("""
    import json, os, sys, time
    from podium.merging.config import parse_config
    from podium.merging.executor import run_merge
    from podium.models import publish

    def slow(fn):  # every filesystem step takes a while, so random kills land inside publication too
        def step(*args, **kwargs):
            time.sleep(0.05)
            return fn(*args, **kwargs)
        return step

    for name in ("rename", "replace", "link", "unlink", "rmdir", "mkdir"):
        setattr(os, name, slow(getattr(os, name)))
    publish.exchange = slow(publish.exchange)
    cfg = parse_config(json.loads(sys.argv[1]))
    print("START", flush=True)
    run_merge(cfg, sys.argv[2])
    print("DONE", flush=True)
""")


def run_killable(config: dict, out: Path, kill_after: float | None) -> float:
    """Run a merge into `out` in a child; SIGKILL it `kill_after` seconds after it starts merging.
    Returns the seconds from the start of the merge to its end (or to the kill)."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, json.dumps(config), str(out)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "START"
    start = time.perf_counter()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    else:
        assert proc.stdout.readline().strip() == "DONE"
    elapsed = time.perf_counter() - start
    proc.communicate(timeout=300)
    proc.wait()  # reaped, so its PID counts as dead for the next run's clean-up
    return elapsed


@pytest.mark.integration
def test_kill_9_during_merge_into_existing_output_never_loses_the_model(models, tmp_path):
    """Six SIGKILLs at random moments of a merge over an existing output (seeded, one in each sixth of
    the merge's duration): after each, the output is the complete old model or the complete new one,
    with the stage folder's own file, and the next run leaves nothing beside it."""
    old_cfg, new_cfg = slerp(models, 0.2), slerp(models, 0.8)
    out = tmp_path / "stage"
    reference = tmp_path / "new"
    run_merge(parse_config(new_cfg), reference)
    new = weights(reference)
    run_merge(parse_config(old_cfg), out)
    full = run_killable(new_cfg, out, kill_after=None)  # how long a merge over an existing output takes
    rng = random.Random(0)
    outcomes = []
    for i in range(6):
        shutil.rmtree(out, ignore_errors=True)
        run_merge(parse_config(old_cfg), out)
        (out / "stage.json").write_text('{"key": "k"}')
        old = weights(out)
        run_killable(new_cfg, out, kill_after=(i + rng.random()) / 6 * full)
        got = weights(out)
        outcomes.append("old" if same(got, old) else "new" if same(got, new) else "broken")
        assert outcomes[-1] != "broken", f"kill {len(outcomes)}: the output holds neither model"
        assert (out / "stage.json").read_text() == '{"key": "k"}'
        run_merge(parse_config(new_cfg), out)  # the next run: completes and cleans what the killed one left
        assert same(weights(out), new) and leftovers(out) == []
    print(f"merge took {full:.2f}s; outcomes of the kills: {outcomes}")
