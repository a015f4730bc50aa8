"""podium merge vs mergekit-yaml (0.1.5), every merge method, on three ~134M-parameter Llamas: time and peak RSS.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/merge_vs_mergekit.py [--repeats 2] [--only ties,dare_ties]

Builds three random-init Llamas locally once (hidden 768, 12 layers, intermediate 2048, vocab
32000: 134.1M parameters each, float32 safetensors, nothing downloaded), then runs each method's
config through podium and `mergekit-yaml` (default options), each as a child process of this
script with the same interpreter and thread settings. podium runs as `load_config` + `run_merge`
in a fresh interpreter, what `podium merge CONFIG OUT` runs after its command dispatch;
`--podium-cli` times the `podium merge` command itself (today its dispatch first imports every
stage module, about 3 s of CPU that has nothing to do with merging). Runs alternate between the tools (the
order flips every repeat), so load from other users of the machine hits both alike. Peak RSS is
the child's ru_maxrss, read by a fresh wrapper process per run. The model files are read once
before timing so both tools start from a warm page cache. For the methods podium computes exactly
like mergekit, the largest difference between the two outputs is printed too (DARE draws its
random drop differently, so it is not compared).

Prints one table per repeat and the median ratios (podium / mergekit: below 1 favours podium),
and appends one JSON line per method to benchmarks/results/merge_vs_mergekit.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PY = sys.executable
MERGEKIT = str(Path(PY).with_name("mergekit-yaml"))
RESULTS = ROOT / "benchmarks" / "results" / "merge_vs_mergekit.jsonl"
EXACT = {"linear", "slerp", "task_arithmetic", "ties", "model_stock", "passthrough"}


def build_models(root: Path, hidden: int, layers: int, vocab: int) -> list[str]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from podium.models.io import save_model
    from podium.models.tiny import build_tokenizer

    tok = build_tokenizer()
    paths = []
    for seed in range(3):
        path = root / f"llama-{hidden}x{layers}-v{vocab}-{seed}"
        paths.append(str(path))
        if (path / "config.json").exists():
            continue
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                          num_hidden_layers=layers, num_attention_heads=12, num_key_value_heads=12,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
        model = LlamaForCausalLM(cfg)
        print(f"built {path.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters", flush=True)
        save_model(model, tok, path)
    return paths


def configs(m0: str, m1: str, m2: str, layers: int) -> dict[str, dict]:
    """One config per merge method, as a mergekit user would write it."""
    two = [{"model": m1, "parameters": {"weight": 0.6, "density": 0.5}},
           {"model": m2, "parameters": {"weight": 0.4, "density": 0.5}}]
    return {
        "linear": {"merge_method": "linear", "models": [
            {"model": m0, "parameters": {"weight": 0.5}}, {"model": m1, "parameters": {"weight": 0.3}},
            {"model": m2, "parameters": {"weight": 0.2}}]},
        "slerp": {  # the Sakura-SOLAR gradient
            "merge_method": "slerp", "base_model": m0,
            "slices": [{"sources": [{"model": m1, "layer_range": [0, layers]},
                                    {"model": m0, "layer_range": [0, layers]}]}],
            "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                                 {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]}},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": m0, "models": [
            {"model": m1, "parameters": {"weight": 0.7}}, {"model": m2, "parameters": {"weight": 0.3}}]},
        "ties": {"merge_method": "ties", "base_model": m0, "models": two},
        "dare_linear": {"merge_method": "dare_linear", "base_model": m0, "models": two},
        "dare_ties": {"merge_method": "dare_ties", "base_model": m0, "models": two},
        "model_stock": {"merge_method": "model_stock", "base_model": m0, "models": [{"model": m1}, {"model": m2}]},
        "passthrough": {  # SOLAR depth up-scaling: 3/4 of the layers, twice, overlapping
            "merge_method": "passthrough",
            "slices": [{"sources": [{"model": m0, "layer_range": [0, layers * 3 // 4]}]},
                       {"sources": [{"model": m0, "layer_range": [layers // 4, layers]}]}]},
    }


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Run cmd in a fresh wrapper; return (wall seconds, CPU seconds, peak RSS MiB of the tool's process)."""
    wrapper = ("import resource, subprocess, sys, time, json\n"
               "t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t\n"
               "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "print(json.dumps({'rc': r.returncode, 'wall': w, 'cpu': u.ru_utime + u.ru_stime, 'rss': u.ru_maxrss / 1024}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([PY, "-c", wrapper, *cmd], check=False, capture_output=True, text=True, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{cmd[0]} failed:\n{out.stderr[-3000:]}")
    res = json.loads(lines[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res['rc']}:\n{out.stderr[-3000:]}")
    return res["wall"], res["cpu"], res["rss"]


def max_abs_diff(a: Path, b: Path) -> float:
    """Largest |podium − mergekit| over all output tensors (one tensor in memory at a time)."""
    from safetensors import safe_open

    def index(folder: Path) -> dict[str, Path]:
        return {k: f for f in sorted(folder.glob("*.safetensors")) for k in safe_open(str(f), "pt").keys()}  # noqa: SIM118

    ia, ib = index(a), index(b)
    if set(ia) != set(ib):
        return float("inf")
    worst = 0.0
    for name in ia:
        with safe_open(str(ia[name]), "pt") as fa, safe_open(str(ib[name]), "pt") as fb:
            x, y = fa.get_tensor(name), fb.get_tensor(name)
        if x.shape != y.shape:
            return float("inf")
        worst = max(worst, (x.double() - y.double()).abs().max().item())
    return worst


PODIUM_LIB = ("import sys; from podium.merging.config import load_config; from podium.merging.executor import run_merge; "
              "run_merge(load_config(sys.argv[1]), sys.argv[2])")
PODIUM_CLI = "import sys; from podium.cli import main; sys.exit(main(['merge', *sys.argv[1:]]))"


def run_one(tool: str, cfg_file: Path, out: Path, podium_cli: bool = False) -> tuple[float, float, float]:
    shutil.rmtree(out, ignore_errors=True)
    if tool == "podium":
        return measure([PY, "-c", PODIUM_CLI if podium_cli else PODIUM_LIB, str(cfg_file), str(out)])
    return measure([MERGEKIT, str(cfg_file), str(out), "--quiet"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "podium-merge-bench"))
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", help="comma-separated methods to run (default: all)")
    parser.add_argument("--results", default=str(RESULTS), help="JSONL file the results are appended to")
    parser.add_argument("--podium-cli", action="store_true", help="time the `podium merge` command, dispatch included")
    args = parser.parse_args()
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    models = build_models(root, args.hidden, args.layers, args.vocab)
    for p in models:  # warm the page cache for both tools alike
        for f in Path(p).glob("*.safetensors"):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    all_configs = configs(*models, args.layers)
    methods = args.only.split(",") if args.only else list(all_configs)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"\nOMP_NUM_THREADS={threads}, {os.cpu_count()} CPUs visible, load average "
          f"{os.getloadavg()[0]:.1f} at start; other processes may share the CPU, so times are noisy\n")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    header = (f"{'method':16s} {'podium s':>9s} {'mergekit s':>10s} {'time ratio':>10s} {'CPU ratio':>9s} "
              f"{'podium MiB':>10s} {'mergekit MiB':>12s} {'RSS ratio':>9s} {'max |diff|':>10s}")
    for rep in range(args.repeats):
        print(f"repeat {rep + 1}/{args.repeats}\n{header}", flush=True)
        for method in methods:
            cfg_file = root / f"{method}.yml"
            cfg_file.write_text(yaml.safe_dump({**all_configs[method], "dtype": "float32"}, sort_keys=False))
            outs = {"podium": root / "out-podium", "mergekit": root / "out-mergekit"}
            order = ["podium", "mergekit"] if rep % 2 == 0 else ["mergekit", "podium"]
            res = {tool: run_one(tool, cfg_file, outs[tool], args.podium_cli) for tool in order}
            diff = max_abs_diff(outs["podium"], outs["mergekit"]) if method in EXACT and rep == 0 else None
            (tp, cp, mp), (tm, cm, mm) = res["podium"], res["mergekit"]
            runs[method].append({"podium_s": tp, "mergekit_s": tm, "podium_cpu_s": cp, "mergekit_cpu_s": cm,
                                 "podium_mib": mp, "mergekit_mib": mm, "load_average": os.getloadavg()[0],
                                 "max_abs_diff": diff, "first": order[0]})
            print(f"{method:16s} {tp:9.1f} {tm:10.1f} {tp / tm:10.2f} {cp / cm:9.2f} {mp:10.0f} {mm:12.0f} "
                  f"{mp / mm:9.2f} {'' if diff is None else f'{diff:.1e}':>10s}", flush=True)
        print()
    print(f"median over {args.repeats} repeats (time ratio < 0.77 means >= 1.3x mergekit's speed)")
    print(f"{'method':16s} {'podium s':>9s} {'mergekit s':>10s} {'time ratio':>10s} {'speed-up':>8s} "
          f"{'CPU ratio':>9s} {'podium MiB':>10s} {'mergekit MiB':>12s} {'RSS ratio':>9s}")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for method in methods:
        rs = runs[method]
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("podium_s", "mergekit_s", "podium_cpu_s", "mergekit_cpu_s", "podium_mib", "mergekit_mib")}
        time_ratio = statistics.median(r["podium_s"] / r["mergekit_s"] for r in rs)
        cpu_ratio = statistics.median(r["podium_cpu_s"] / r["mergekit_cpu_s"] for r in rs)
        rss_ratio = statistics.median(r["podium_mib"] / r["mergekit_mib"] for r in rs)
        print(f"{method:16s} {med['podium_s']:9.1f} {med['mergekit_s']:10.1f} {time_ratio:10.2f} {1 / time_ratio:7.2f}x "
              f"{cpu_ratio:9.2f} {med['podium_mib']:10.0f} {med['mergekit_mib']:12.0f} {rss_ratio:9.2f}")
        with open(args.results, "a") as f:
            f.write(json.dumps({
                "benchmark": "merge_vs_mergekit", "method": method, "date": stamp, "repeats": len(rs),
                "time_ratio_median": time_ratio, "cpu_ratio_median": cpu_ratio, "rss_ratio_median": rss_ratio,
                **{f"{k}_median": v for k, v in med.items()},
                "runs": rs, "models": f"3 x Llama {args.hidden}x{args.layers} vocab {args.vocab}, float32",
                "omp_num_threads": threads, "cpus": os.cpu_count(), "mergekit_options": "--quiet",
                "podium_entry": "podium merge (CLI)" if args.podium_cli else "load_config + run_merge",
            }) + "\n")
    print(f"\npeak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"results appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
