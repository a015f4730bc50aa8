"""podium merge vs mergekit-yaml on three ~100M-parameter Llamas: wall time and peak RSS, as ratios.

    OMP_NUM_THREADS=1 /work/main/.venv/bin/python benchmarks/merge_vs_mergekit.py [--workdir DIR]

Builds three random-init Llamas locally (hidden 768, 12 layers, vocab 8000: ~97M parameters each,
float32, safetensors, the tiny char tokenizer), then runs each config through both tools, each in
its own subprocess (same interpreter, same thread count). Peak RSS is the child's ru_maxrss, read
by a fresh wrapper process per run so runs do not see each other's peaks. The files are read once
before timing so both tools start from a warm page cache. Ratios < 1 favour podium.

One run on 2026-11-23 while other agents shared the 2 CPU cores (OMP_NUM_THREADS=1; noisy):
    config                          podium s  mergekit s  time ratio  podium MiB  mergekit MiB  RSS ratio
    slerp (Sakura-SOLAR gradient)        6.2         8.1        0.76         351          1544       0.23
    ties (3 models, density 0.5)        43.0        65.3        0.66         728          1982       0.37
    passthrough (depth up-scaling)       5.4        13.7        0.39         252          1322       0.19
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PY = sys.executable
MERGEKIT = str(Path(PY).with_name("mergekit-yaml"))


def build_models(root: Path, hidden: int, layers: int, vocab: int) -> list[str]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from podium.models.io import save_model
    from podium.models.tiny import build_tokenizer

    tok = build_tokenizer()
    paths = []
    for seed in range(3):
        path = root / f"llama-{seed}"
        paths.append(str(path))
        if (path / "config.json").exists():
            continue
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                          num_hidden_layers=layers, num_attention_heads=12, num_key_value_heads=12,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
        model = LlamaForCausalLM(cfg)
        n = sum(p.numel() for p in model.parameters())
        print(f"built {path.name}: {n / 1e6:.1f}M parameters", flush=True)
        save_model(model, tok, path)
    return paths


def configs(m0: str, m1: str, m2: str, layers: int) -> dict[str, dict]:
    return {
        "slerp (Sakura-SOLAR gradient)": {
            "slices": [{"sources": [{"model": m1, "layer_range": [0, layers]},
                                    {"model": m0, "layer_range": [0, layers]}]}],
            "merge_method": "slerp", "base_model": m0,
            "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                                 {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]},
            "dtype": "float32"},
        "ties (3 models, density 0.5)": {
            "merge_method": "ties", "base_model": m0, "dtype": "float32",
            "models": [{"model": m1, "parameters": {"weight": 0.6, "density": 0.5}},
                       {"model": m2, "parameters": {"weight": 0.4, "density": 0.5}}]},
        "passthrough (depth up-scaling)": {
            "merge_method": "passthrough", "dtype": "float32",
            "slices": [{"sources": [{"model": m0, "layer_range": [0, layers * 3 // 4]}]},
                       {"sources": [{"model": m0, "layer_range": [layers // 4, layers]}]}]},
    }


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run cmd in a fresh wrapper; return (wall seconds, peak RSS MiB of the tool)."""
    wrapper = ("import resource, subprocess, sys, time, json\n"
               "t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t\n"
               "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
               "print(json.dumps({'rc': r.returncode, 'wall': w, 'rss': rss}))")
    src = str(Path(__file__).resolve().parents[1] / "src")  # podium from this checkout, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([PY, "-c", wrapper, *cmd], check=False, capture_output=True, text=True, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{cmd[0]} failed:\n{out.stderr[-3000:]}")
    res = json.loads(lines[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res['rc']}:\n{out.stderr[-3000:]}")
    return res["wall"], res["rss"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "podium-merge-bench"))
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--only", help="substring of the config names to run")
    args = parser.parse_args()
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    models = build_models(root, args.hidden, args.layers, args.vocab)
    for p in models:  # warm the page cache for both tools alike
        for f in Path(p).glob("*.safetensors"):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs visible"
    print(f"\n{env_note}; other processes may share the CPU, so wall times are noisy\n")
    print(f"{'config':34s} {'podium s':>9s} {'mergekit s':>10s} {'time ratio':>10s} "
          f"{'podium MiB':>10s} {'mergekit MiB':>12s} {'RSS ratio':>9s}")
    for name, cfg in configs(*models, args.layers).items():
        if args.only and args.only not in name:
            continue
        cfg_file = root / "config.yml"
        cfg_file.write_text(yaml.safe_dump(cfg))
        ours_out, theirs_out = root / "out-podium", root / "out-mergekit"
        for d in (ours_out, theirs_out):
            subprocess.run(["rm", "-rf", str(d)], check=True)
        t_ours, m_ours = measure([PY, "-m", "podium.cli.merge", str(cfg_file), str(ours_out)])
        t_theirs, m_theirs = measure([MERGEKIT, str(cfg_file), str(theirs_out), "--quiet", "--no-lazy-unpickle"])
        print(f"{name:34s} {t_ours:9.1f} {t_theirs:10.1f} {t_ours / t_theirs:10.2f} "
              f"{m_ours:10.0f} {m_theirs:12.0f} {m_ours / m_theirs:9.2f}", flush=True)
    print(f"\npeak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
