"""podium's FSDP2 on 2 CPU processes (gloo): sharded training equals one process, per-rank memory halves,
sharded pickle-free checkpoints resume after kill -9, at another world size (2 -> 1, 1 -> 2) and past a
damaged last checkpoint; rank-local loading (each rank reads only its rows of the weight files) ends with the
weights of the whole-model loading path on the families of tests/parity/families.py.

Budget: one launch of 2 processes runs sft, every train objective and LoRA one after another, then DPO on each
family loaded rank-locally and whole (tests/integration/fsdp_sweep.py); their one-process twins (gradient
accumulation 2) run in this process.
The resume test drives `podium run` itself, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from benchmarks import sharded_memory
from safetensors.torch import load_file
from tests.parity.families import build_family
from tests.pref_helpers import PAIRS, save_tiny, write_pairs

from podium.distributed.fsdp import ENV, FSDPSettings
from podium.losses import LOSS_SPECS
from podium.models.io import save_model
from podium.stages import run_stage

# scripts/gpu_check.sh runs these on 2 GPUs (NCCL): PODIUM_FSDP_TEST_DEVICE=cuda, and PODIUM_FSDP_TEST_BF16=1 for bf16
# compute (FSDP2's MixedPrecisionPolicy), compared with the one-process fp32 twins at a bf16 tolerance.
ON_CUDA = os.environ.get("PODIUM_FSDP_TEST_DEVICE") == "cuda"
BF16 = os.environ.get("PODIUM_FSDP_TEST_BF16") == "1"
# PODIUM_FSDP_TEST_OFFLOAD=1 (CUDA only; CPU ranks have nothing to offload): FSDP2's CPU offload, rank-local loading
# then fills shards in host memory while the buffers stay on the GPU.
OFFLOAD = os.environ.get("PODIUM_FSDP_TEST_OFFLOAD") == "1"
TOLERANCE = 1e-2 if BF16 else 1e-5
# benchmarks/sharded_memory.py measures "medium" and "large" too (and on GPUs: scripts/gpu_check.sh fsdp)
MEMORY_SIZES = ("small",) if not ON_CUDA else ()
# Rank-local loading against whole-model loading: tied embeddings (llama3), qkv bias (qwen2), soft-capping and
# four norms per layer (gemma2), fused experts converted from per-expert files (mixtral).
LOAD_FAMILIES = ("llama3", "qwen2", "gemma2", "mixtral")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(ON_CUDA and torch.cuda.device_count() < 2, reason="the CUDA run needs 2 GPUs")]
ROOT = Path(__file__).resolve().parents[2]
SWEEP = Path(__file__).with_name("fsdp_sweep.py")
PODIUM = [sys.executable, "-m", "podium"]


def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
            "COLUMNS": "400", **extra}  # log lines unwrapped


def max_diff(a: Path, b: Path, name: str = "model.safetensors") -> float:
    x, y = load_file(str(a / name)), load_file(str(b / name))
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def pairs_with_every_field(path: Path) -> Path:
    """PAIRS x 4 carrying the record fields of every self-play objective (SPPO probabilities, GPO scores)."""
    rows = [{**r, "chosen_prob": 0.7, "rejected_prob": 0.3, "pair_prob": 0.65, "chosen_score": 0.4,
             "rejected_score": -0.2} for r in PAIRS * 4]
    return write_pairs(path, rows)


def test_fsdp_on_two_processes_equals_one_for_sft_every_objective_and_lora(tmp_path):
    model = save_tiny(tmp_path / "model")
    pairs = pairs_with_every_field(tmp_path / "pairs.jsonl")
    common = {"model": str(model), "batch_size": 2, "max_steps": 2, "learning_rate": 1e-3, "seed": 1}
    sft = {**common, "data": [{"task": "arithmetic", "count": 32}], "max_length": 48}
    runs = {"sft": ("sft", sft), "sft_lora": ("sft", {**sft, "lora": {"r": 4, "alpha": 8}})}
    # Preference objectives at lr 1e-4 (their default is 1e-6): at 1e-3 Adam turns float rounding in the summed
    # gradients (2 ranks vs 2 micro-batches) into weight differences of 2e-6..1.2e-5 after two steps (measured).
    for objective in LOSS_SPECS:  # "train-NAME": the objective `sft` is not the sft stage
        runs[f"train-{objective}"] = ("train", {**common, "learning_rate": 1e-4, "objective": objective, "data": str(pairs),
                                                "max_length": 64, "reference_cache_dir": str(tmp_path / "cache")})
    runs["dpo_lora"] = ("train", {**runs["train-dpo"][1], "lora": {"r": 4, "alpha": 8}})
    for family in LOAD_FAMILIES:  # saved in several files with an index, as Hub models are
        built, tok = build_family(family, seed=2)
        folder = save_model(built, tok, tmp_path / family, max_shard_size="100KB")
        runs[family] = ("train", {**runs["train-dpo"][1], "model": str(folder),
                                  "reference_cache_dir": str(tmp_path / f"cache-{family}")})
    assert (tmp_path / "llama3" / "model.safetensors.index.json").exists()
    whole_load = {"env": {ENV: FSDPSettings(mixed_precision="bf16" if BF16 else "no", cpu_offload=OFFLOAD,
                                            rank_local_load=False).to_env()}}
    plan = [{"kind": kind, "config": cfg, "out": str(tmp_path / "two" / name)} for name, (kind, cfg) in runs.items()]
    plan += [{"kind": "train", "config": {**runs[f][1], "reference_cache_dir": str(tmp_path / f"cache-{f}-whole")},
              "out": str(tmp_path / "two" / f"{f}-whole"), **whole_load} for f in LOAD_FAMILIES]
    plan += [{"kind": "memory", "size": size, "out": str(tmp_path / f"memory-{size}.json")} for size in MEMORY_SIZES]
    (tmp_path / "runs.json").write_text(json.dumps(plan))
    accelerate = str(Path(sys.executable).parent / "accelerate")
    done = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no", str(SWEEP),
                           str(tmp_path / "runs.json")],
                          env=env(**({} if ON_CUDA else {"ACCELERATE_USE_CPU": "1"}),
                                  **{ENV: FSDPSettings(mixed_precision="bf16" if BF16 else "no", cpu_offload=OFFLOAD).to_env()}),
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    log = done.stdout + done.stderr
    assert "FSDP2: 2 decoder layers (LlamaDecoderLayer) and the root sharded over 2 processes" in log
    assert "reference log-probs computed for" in log and "on 2 processes" in log  # the sharded reference pass

    one = {name: run_stage(kind, {**cfg, "gradient_accumulation_steps": 2}, tmp_path / "one" / name)
           for name, (kind, cfg) in runs.items()}
    diffs = {name: max_diff(tmp_path / "two" / name, tmp_path / "one" / name) for name in runs}
    print("largest |two - one| per run:", diffs)
    assert all(d <= TOLERANCE for d in diffs.values()), {k: d for k, d in diffs.items() if d > TOLERANCE}
    for name in ("sft_lora", "dpo_lora"):  # the adapter itself, beside the merged model
        assert max_diff(tmp_path / "two" / name / "adapter", tmp_path / "one" / name / "adapter",
                        "adapter_model.safetensors") <= TOLERANCE, name

    # Rank-local loading ends with the weights of the whole-model loading path and of one process, and the saved
    # configs are the same. Every policy loads rank-locally (reward/gpm heads load whole), and each family's sharded
    # reference too (its own cache: 2 loads); the objectives' shared reference cache is computed once.
    def loads(name):
        return json.loads((tmp_path / "two" / name / "sweep-metrics.json").read_text())["rank_local_loads"]

    for name, (kind, cfg) in runs.items():
        heads = kind == "train" and LOSS_SPECS[cfg["objective"]].kind == "preference_model"
        assert loads(name) == 0 if heads else loads(name) >= 1, (name, loads(name))
    for family in LOAD_FAMILIES:
        two, whole_run = tmp_path / "two" / family, tmp_path / "two" / f"{family}-whole"
        assert (loads(family), loads(f"{family}-whole")) == (2, 0), family
        print(f"{family}: largest |rank-local - whole load| {max_diff(two, whole_run)}")
        assert max_diff(two, whole_run) <= TOLERANCE, family
        for meta in ("config.json", "generation_config.json"):
            assert json.loads((two / meta).read_text()) == json.loads((whole_run / meta).read_text()), (family, meta)

    # Per-rank memory: parameters, gradients and optimizer state each about half of one process's.
    for name in ("sft", "train-dpo", "train-reward", "dpo_lora"):
        two = json.loads((tmp_path / "two" / name / "sweep-metrics.json").read_text())
        for what in ("parameters", "gradients", "optimizer"):
            whole = one[name][f"memory/{what}_bytes"]
            assert two[f"memory/{what}_bytes_total"] == pytest.approx(whole, rel=0.02), (name, what)
            assert 0.45 <= two[f"memory/{what}_bytes"] / whole <= 0.56, (name, what, two[f"memory/{what}_bytes"], whole)
        print(name, {k: v for k, v in two.items() if k.startswith("memory/")}, "one process:",
              {k: v for k, v in one[name].items() if k.startswith("memory/") and not k.endswith("total")})

    # The estimate against measured peaks (torch's MemTracker) of each process, 2 processes and 1.
    for size in MEMORY_SIZES:
        sharded_memory.worker(size, str(tmp_path / f"memory-{size}-one.json"))
        for processes, file in ((2, f"memory-{size}.json"), (1, f"memory-{size}-one.json")):
            measured = max(r["peak"] for r in json.loads((tmp_path / file).read_text()))
            estimate, _ = sharded_memory.estimated(size, processes)
            print(f"memory {size}, {processes} process(es): measured {measured}, estimate {estimate}")
            assert 0.75 <= estimate / measured <= 1.25, (size, processes, estimate, measured)


# lr 1e-4: the uninterrupted twin runs one process with accumulation 2, and Adam turns the float rounding of 2 ranks'
# summed gradients vs 2 micro-batches into weight differences that scale with lr (1.4e-6 after 16 steps at 1e-3).
RESUME = """\
name: fsdp-resume
launch: {num_processes: 2, timeout: 300, fsdp: true}
stages:
  - {name: dpo, kind: train, model: MODEL, data: PAIRS, batch_size: 1, max_steps: 16, save_steps: 2,
     save_total_limit: 2, max_length: 64, learning_rate: 1.0e-4, seed: 3, reference_cache_dir: cache}
"""

# Loaded by every Python process of the run (PYTHONPATH) when PODIUM_TEST_STOP_AFTER_CHECKPOINT is set: the ranks
# end (as a crash would) right after the first checkpoint is published.
HOOK = """\
import os
if os.environ.get("PODIUM_TEST_STOP_AFTER_CHECKPOINT"):
    import podium.training.loop as loop

    saved = loop.save_checkpoint

    def save_then_die(*args, **kwargs):
        saved(*args, **kwargs)
        os._exit(3)

    loop.save_checkpoint = save_then_die
"""


def podium_run(recipe: Path, out: Path, *args, check=True, hook: Path | None = None, **extra):
    path = f"{hook}{os.pathsep}" if hook else ""
    return subprocess.run([*PODIUM, "run", str(recipe), "-o", str(out), "--no-progress", *args], cwd=recipe.parent,
                          env=env(PYTHONPATH=f"{path}{ROOT}{os.pathsep}{ROOT / 'src'}", **extra), capture_output=True,
                          text=True, check=check)


def test_fsdp_checkpoints_resume_after_kill9_at_another_world_size_and_past_damage(tmp_path):
    save_tiny(tmp_path / "model")
    write_pairs(tmp_path / "pairs.jsonl", PAIRS * 8)
    recipe = tmp_path / "resume.yaml"
    recipe.write_text(RESUME.replace("MODEL", str(tmp_path / "model")).replace("PAIRS", str(tmp_path / "pairs.jsonl")))
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    # The uninterrupted run: the same stage (same key: the global batch is processes x accumulation) in one process.
    straight = tmp_path / "straight"
    podium_run(recipe, straight, "dpo.launch=null", "dpo.gradient_accumulation_steps=2")

    # kill -9 of `podium run` once two sharded checkpoints exist.
    run = tmp_path / "killed"
    proc = subprocess.Popen([*PODIUM, "run", str(recipe), "-o", str(run), "--no-progress"], env=env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpts = run / "dpo" / "checkpoints"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if len([p for p in ckpts.glob("step-*") if (p / "trainer_state.json").exists()]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its second checkpoint; make it longer"
    family = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    printed, _ = proc.communicate()
    assert "[dpo] memory per process, 2 processes, FSDP2 (podium): peak ~" in printed  # said before the launch
    _, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, alive
    kept = sorted((int(p.name[5:]), p) for p in ckpts.glob("step-*") if (p / "trainer_state.json").exists())
    newest = kept[-1][1]
    files = {p.name for p in newest.iterdir()}
    assert {"shards-rank0.safetensors", "shards-rank1.safetensors", "index-rank0.json", "index-rank1.json",
            "optimizer.json", "trainer_state.json"} <= files
    assert not any(name.endswith((".pt", ".pkl", ".bin")) for name in files)  # no pickle anywhere
    index = json.loads((newest / "index-rank1.json").read_text())
    entry = index["entries"]["param/model.embed_tokens.weight"]
    assert entry["offset"][0] > 0 and entry["shape"][0] > entry["local_shape"][0]  # rank 1 holds the second half

    chain = tmp_path / "chain"
    shutil.copytree(run, chain, symlinks=True)
    (chain / ".podium-lock").unlink(missing_ok=True)

    # The newest sharded checkpoint damaged (an index missing): the same command resumes from the one before.
    (newest / "index-rank1.json").unlink()
    again = podium_run(recipe, run)
    assert "[dpo] resuming (train)" in again.stdout + again.stderr
    log = (run / "dpo" / "launch.log").read_text()
    assert f"checkpoint {newest} is damaged (index-rank1.json is missing); trying {kept[-2][1].name}" in log
    assert f"resuming from {kept[-2][1]}" in log
    print("resumed after kill -9 vs uninterrupted:", max_diff(straight / "dpo", run / "dpo"))
    assert max_diff(straight / "dpo", run / "dpo") <= 1e-6

    # 2 -> 1 -> 2: the killed run's copy goes on in one process (in-process, no launch) with accumulation 2 (the same
    # global batch, so the same stage key) from the 2-process checkpoint, and stops (as a crash would) after its own
    # first checkpoint; two processes finish it from that one-process checkpoint.
    one = podium_run(recipe, chain, "dpo.launch=null", "dpo.gradient_accumulation_steps=2", check=False,
                     hook=tmp_path / "hook", PODIUM_TEST_STOP_AFTER_CHECKPOINT="1")
    log = one.stdout + one.stderr
    assert one.returncode == 3 and "[dpo] resuming (train)" in log, log[-3000:]
    assert f"resuming from {chain / 'dpo' / 'checkpoints' / newest.name}" in log
    assert "written by 2 process(es), resharded for 1" in log
    ones = [p for p in (chain / "dpo" / "checkpoints").glob("step-*") if int(p.name[5:]) > kept[-1][0]]
    assert ones and (ones[0] / "model.safetensors").exists()  # the unsharded format of one process
    podium_run(recipe, chain)
    log = (chain / "dpo" / "launch.log").read_text()
    assert "written by 1 process(es), resharded for 2" in log
    print("resumed 2 -> 1 -> 2 vs uninterrupted:", max_diff(straight / "dpo", chain / "dpo"))
    assert max_diff(straight / "dpo", chain / "dpo") <= 1e-5
