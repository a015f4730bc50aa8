"""Whole recipes on several processes (gloo on CPU): `podium run` launches each distributed stage through
`accelerate launch`, results equal one process, a failing rank ends its stage, kill -9 then rerun resumes.

Every distributed stage here has a one-process twin (`launch: null`) reading the same inputs: a training
stage on 2 processes x accumulation 1 must end with the weights of 1 process x accumulation 2, and
sampling on 2 processes must write the samples of 1 process, byte for byte.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from podium.files import read_jsonl

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PODIUM = [sys.executable, "-m", "podium"]

E2E = """\
name: cluster-e2e
launch: {num_processes: 2, timeout: 300}
stages:
  - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, num_heads: 2}
  - &sft
    name: sft
    kind: sft
    model: "@base"
    data: [{task: arithmetic, count: 64}]
    batch_size: 4
    max_steps: 4
    max_length: 48
    learning_rate: 1.0e-3
  - {<<: *sft, name: sft_1p, gradient_accumulation_steps: 2, launch: null}
  - &sgd {name: sgd, kind: sgd, model: "@sft", task: arithmetic, count: 12, num_samples: 3, max_new_tokens: 6, batch_size: 8}
  - {<<: *sgd, name: sgd_1p, batch_size: 5, launch: null}
  - &train {name: train, kind: train, model: "@sft", data: "@sgd", batch_size: 2, max_steps: 3, max_length: 48,
            learning_rate: 1.0e-3, reference_cache_dir: cache, report_to: tensorboard}
  - {<<: *train, name: train_1p, gradient_accumulation_steps: 2, launch: null}
  - &rm {name: rm, kind: train, objective: reward, model: "@sft", data: "@sgd", batch_size: 2, max_steps: 2,
         max_length: 48, learning_rate: 1.0e-3}
  - {<<: *rm, name: rm_1p, gradient_accumulation_steps: 2, launch: null}
  - &selfplay
    name: selfplay
    kind: selfplay
    model: "@train"
    task: arithmetic
    count: 8
    iterations: 1
    num_samples: 2
    max_new_tokens: 6
    judge: {kind: reward, model: "@rm"}
    beta: 0.1
    eval_count: 4
    train: {batch_size: 1, max_steps: 2, max_length: 48, learning_rate: 1.0e-3, reference_cache_dir: cache}
  - {<<: *selfplay, name: selfplay_1p, train: {batch_size: 1, gradient_accumulation_steps: 2, max_steps: 2,
                                                max_length: 48, learning_rate: 1.0e-3, reference_cache_dir: cache},
     launch: null}
  - {name: eval, kind: eval, model: "@selfplay", task: arithmetic, count: 8}
  - {name: tasks, kind: tasks, train: 16, test: 2}
  - &gen {name: gen, kind: generate, model: "@sft", prompts: "@tasks.train", n: 3, max_new_tokens: 6, batch_size: 8}
  - {<<: *gen, name: gen_1p, batch_size: 5, launch: null}
"""


def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), **extra}


def podium_run(recipe: Path, out: Path, *args, check=True, **kw):
    return subprocess.run([*PODIUM, "run", str(recipe), "-o", str(out), "--no-progress", *args], env=kw.pop("env", env()),
                          cwd=recipe.parent, capture_output=True, text=True, check=check, **kw)


def max_diff(a: Path, b: Path) -> float:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def test_recipe_on_two_processes_equals_one(tmp_path):
    recipe = tmp_path / "e2e.yaml"
    recipe.write_text(E2E)
    run = tmp_path / "run"
    done = podium_run(recipe, run)
    log = done.stdout + done.stderr
    for stage in ("sft", "sgd", "train", "rm", "selfplay", "gen"):
        assert f"[{stage}] 2 processes: ACCELERATE_USE_CPU=1 " in log, stage
        assert (run / stage / ".launch" / "result.json").exists()
    assert "[eval] 2 processes" not in log  # a light stage runs in-process
    for stage in ("sft", "train", "rm", "selfplay"):
        assert max_diff(run / stage, run / f"{stage}_1p") <= 1e-5, stage
    # Sampling: the file one process writes. Log-probs (sgd keeps them) agree to float32 rounding only:
    # a batched forward rounds differently with the batch it is in, on one process or two alike.
    assert (run / "gen" / "samples.jsonl").read_bytes() == (run / "gen_1p" / "samples.jsonl").read_bytes()
    assert (run / "sgd" / "pairs.jsonl").read_bytes() == (run / "sgd_1p" / "pairs.jsonl").read_bytes()
    two, one = (read_jsonl(run / s / "generate" / "samples.jsonl") for s in ("sgd", "sgd_1p"))
    assert [r["responses"] for r in two] == [r["responses"] for r in one]
    assert [x for r in two for x in r["logps"]] == pytest.approx([x for r in one for x in r["logps"]], rel=1e-6)
    for name in ("iter1/pairs.jsonl", "iter1/generate/samples.jsonl", "iter1/done.json"):
        assert (run / "selfplay" / name).read_text() == (run / "selfplay_1p" / name).read_text(), name
    assert "reference log-probs computed for" in (run / "train" / "launch.log").read_text()
    # TensorBoard: written by the main process only.
    assert len(list((run / "train" / "tracking" / "train").glob("events.out.tfevents.*"))) == 1
    assert "on 2 processes" in (run / "train" / "launch.log").read_text()
    # The rerun finds every stage done.
    again = podium_run(recipe, run)
    assert "[sft] 2 processes" not in again.stdout + again.stderr


FAIL = """\
name: failing
launch: {num_processes: 2, timeout: 60}
stages:
  - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, num_heads: 2}
  - {name: sft, kind: sft, model: "@base", data: [{task: arithmetic, count: 32}], batch_size: 4, max_steps: 50,
     max_length: 48}
"""

# Loaded by every Python process of the run (PYTHONPATH): rank 1 raises when its training loop starts,
# while rank 0 goes on into the loop's first collective and would wait there for rank 1 forever.
HOOK = """\
import os
if os.environ.get("RANK") == "1":
    import podium.training.loop as loop

    def explode(*args, **kwargs):
        raise RuntimeError("rank 1 exploded on purpose")

    loop.train_loop = explode
"""


def test_failing_rank_ends_the_stage_with_its_message(tmp_path):
    recipe = tmp_path / "fail.yaml"
    recipe.write_text(FAIL)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    t0 = time.monotonic()
    done = podium_run(recipe, tmp_path / "run", check=False, timeout=400,
                      env=env(PYTHONPATH=f"{tmp_path / 'hook'}{os.pathsep}{ROOT / 'src'}"))
    elapsed = time.monotonic() - t0
    assert done.returncode == 2
    assert "error: stage 'sft' failed on rank 1 of 2: RuntimeError: rank 1 exploded on purpose" in done.stderr
    assert elapsed < 60 + 120, elapsed  # within the timeout (plus the start of the processes), not a hang
    assert not (tmp_path / "run" / "sft" / ".podium-done").exists()
    error = (tmp_path / "run" / "sft" / ".launch" / "error-rank1.json").read_text()
    assert "Traceback" in error and "explode" in error


KILL = """\
name: killed
launch: {num_processes: 2}
stages:
  - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, num_heads: 2}
  - {name: sft, kind: sft, model: "@base", data: [{task: arithmetic, count: 32}], batch_size: 2, max_steps: 30,
     save_steps: 3, max_length: 48, learning_rate: 1.0e-3, seed: 3}
"""


def test_kill9_of_podium_run_then_rerun_resumes(tmp_path):
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(KILL)
    podium_run(recipe, tmp_path / "straight")

    run = tmp_path / "killed"
    proc = subprocess.Popen([*PODIUM, "run", str(recipe), "-o", str(run), "--no-progress"], env=env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = run / "sft" / "checkpoints"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if any((p / "trainer_state.json").exists() for p in ckpts.glob("step-*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its first checkpoint; make it longer"
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len(family) >= 3, family  # the launcher and both ranks
    os.kill(proc.pid, signal.SIGKILL)  # podium run only: its children must not outlive it
    proc.wait()
    _, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, alive
    assert not (run / "sft" / ".podium-done").exists()

    again = podium_run(recipe, run)
    assert "resuming from" in (run / "sft" / "launch.log").read_text()
    assert "[sft] resuming (sft)" in again.stdout + again.stderr
    assert max_diff(tmp_path / "straight" / "sft", run / "sft") <= 1e-6


def test_dry_run_prints_the_launch_of_each_distributed_stage(tmp_path):
    recipe = tmp_path / "e2e.yaml"
    recipe.write_text(textwrap.dedent(E2E))
    done = podium_run(recipe, tmp_path / "run", "--dry-run")
    assert done.stdout.count("-m podium.cli.worker") == 6
    assert not (tmp_path / "run").exists()


MULTI = """\
name: two-machines
launch: {{num_processes: 2, num_machines: 2, main_process_ip: 127.0.0.1, main_process_port: {port}, same_network: true,
         timeout: 300}}
stages:
  - {{name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 1, num_heads: 2}}
  - &sft {{name: sft, kind: sft, model: "@base", data: [{{task: arithmetic, count: 32}}], batch_size: 4, max_steps: 3,
          max_length: 48, learning_rate: 1.0e-3}}
  - {{<<: *sft, name: sft_1p, gradient_accumulation_steps: 2, launch: null}}
  - {{name: eval, kind: eval, model: "@sft", task: arithmetic, count: 4}}
"""


def test_two_machines_with_the_same_command(tmp_path):
    """Two `podium run`s on one host stand in for two machines: machine 1 joins machine 0's launch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = tmp_path / "multi.yaml"
    recipe.write_text(MULTI.format(port=port))
    cmd = [*PODIUM, "run", str(recipe), "-o", str(tmp_path / "run"), "--no-progress"]
    machine0 = subprocess.Popen(cmd, env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    machine1 = subprocess.Popen([*cmd, "launch.machine_rank=1"], env=env(), cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    out0, _ = machine0.communicate(timeout=600)
    out1, _ = machine1.communicate(timeout=120)
    assert machine0.returncode == 0, out0[-3000:]
    assert machine1.returncode == 0, out1[-3000:]
    assert "machine 1: starting this machine's ranks" in out1 and "[eval] done on machine 0" in out1
    assert "--machine_rank 1" in out1 and "--num_machines 2" in out1
    assert (tmp_path / "run" / "sft" / "launch-machine1.log").exists()
    assert max_diff(tmp_path / "run" / "sft", tmp_path / "run" / "sft_1p") <= 1e-5
    assert not (tmp_path / "run" / "eval" / "launch.log").exists()
