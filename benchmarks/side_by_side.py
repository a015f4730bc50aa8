"""The harness of podium's side-by-side benchmarks: interleaved child runs, equal threads, load, one JSON line.

Each benchmark runs podium and its peer as child processes of one parent, alternately (A B, B A, A B, ...
so a drift in background load hits both sides alike), every child with the same thread count
(`OMP_NUM_THREADS`, `MKL_NUM_THREADS` and `torch.set_num_threads`). It reports the median over pairs of
the per-pair ratio, and appends one JSON line per result to `benchmarks/results/<name>.jsonl` with the
machine, the thread count, the 1-minute load average before and after every child, and the raw numbers.

Memory is the child's peak RSS growth over its state after imports (`ru_maxrss`, CPU) or
`torch.cuda.max_memory_allocated` (CUDA): what the job itself added, not the libraries.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def pin_threads(threads: int) -> None:
    """Give this (child) process `threads` compute threads; call before the first torch op."""
    import torch

    torch.set_num_threads(threads)


def child_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "TOKENIZERS_PARALLELISM": "false",
            "TRANSFORMERS_VERBOSITY": "error"}


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def run_child(script: str, argv: list[str], threads: int) -> dict:
    """Run `python script argv...` and return the JSON object on its last stdout line, plus the load around it."""
    before = load1()
    res = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, env=child_env(threads),
                         check=False)
    if res.returncode != 0:
        raise SystemExit(f"{Path(script).name} {' '.join(argv)} failed:\n{res.stderr[-4000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["load_before"], out["load_after"] = before, load1()
    return out


def interleave(script: str, sides: dict[str, list[str]], threads: int, pairs: int) -> dict[str, list[dict]]:
    """Run `script` with each side's argv `pairs` times, alternating which side goes first; results per side."""
    names = list(sides)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(pairs):
        for n in names if i % 2 == 0 else names[::-1]:
            runs[n].append(run_child(script, sides[n], threads))
    return runs


def median_ratio(ours: list[dict], peer: list[dict], key: str) -> float:
    """Median over pairs of ours[key] / peer[key]."""
    return statistics.median(a[key] / b[key] for a, b in zip(ours, peer) if b[key])


def max_curve_diff(a: list[float], b: list[float]) -> float:
    """Largest |a_i - b_i| over the common steps of two loss curves (nan when either is empty)."""
    n = min(len(a), len(b))
    return max((abs(x - y) for x, y in zip(a[:n], b[:n])), default=float("nan"))


def training_ratios(pod: list[dict], peer: list[dict], **times: str) -> dict[str, float]:
    """podium / peer for a training benchmark, each the median over interleaved pairs: speed (the peer's
    wall time over podium's), CPU time, training loop, every further phase in `times` (name -> run key,
    peer over podium) and peak memory (podium over the peer); plus the loss curves' largest difference."""
    out = {"speed": median_ratio(peer, pod, "wall_s"), "cpu_time": median_ratio(peer, pod, "cpu_s"),
           "train_loop": median_ratio(peer, pod, "train_s")}
    out.update({name: median_ratio(peer, pod, key) for name, key in times.items()})
    out["peak_memory"] = median_ratio(pod, peer, "peak_mb")
    out["loss_curve_max_abs_diff"] = max(max_curve_diff(a["losses"], b["losses"]) for a, b in zip(pod, peer))
    return out


def print_curves(pod: list[dict], peer: list[dict], diff: float, peer_name: str = "TRL") -> None:
    """The first pair's loss curves, their largest difference over all pairs, and podium's last-step MFU."""
    print(f"  loss curves: max |podium - {peer_name}| = {diff:.2e}; {peer_name} "
          + " ".join(f"{x:.3f}" for x in peer[0]["losses"]))
    print("                                          podium " + " ".join(f"{x:.3f}" for x in pod[0]["losses"]))
    if pod[0].get("mfu") is not None:
        print(f"  podium last step: {pod[0]['flops_per_second'] / 1e9:.1f} GFLOP/s, MFU {pod[0]['mfu']:.3f}")


def benchmark_model(args, model_config: dict, prefix: str) -> tuple[Path, int | None]:
    """A scratch folder and the model both sides load: `--model-dir` as given, else podium's tiny Llama built
    with `model_config` and saved there. Sets `args.model`; returns (folder, parameter count or None)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix=prefix))
    if args.model_dir:
        args.model = args.model_dir
        return work, None
    model, tok = build_tiny_model(seed=0, **model_config)
    args.model = str(save_model(model, tok, work / "model"))
    return work, sum(p.numel() for p in model.parameters())


def cpu_seconds() -> float:
    """CPU time this process has used (user + system). With one thread it is what the job cost, and it
    moves much less than wall time when other processes share the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(threads: int) -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__, "threads": threads,
            "python": platform.python_version()}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def append_result(name: str, record: dict) -> Path:
    """Append one JSON line (stamped with time, commit) to benchmarks/results/<name>.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    record = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": git_commit(), **record}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return path
