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


# Random-init models of real architectures (`--preset`), no download. The shapes are those of the public
# config.json files: Qwen/Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864, vocab 151936,
# tied embeddings, rope_theta 1e6, rms_norm_eps 1e-6, 32768 positions, QKV bias: Qwen2's default) and
# meta-llama/Llama-3.2-1B (hidden 2048, 16 layers, 32 heads / 8 KV heads, head_dim 64, MLP 8192, vocab 128256,
# tied embeddings, rope_theta 5e5 with llama3 rope scaling, rms_norm_eps 1e-5, 131072 positions).
# `llama-tiny-32k` is a CPU-sized Llama with a real (32000) vocabulary, so a CPU run has real-vocab shapes.
PRESETS: dict[str, tuple[str, dict]] = {
    "qwen2.5-0.5b": ("qwen2", {
        "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "use_sliding_window": False}),
    "llama-1b": ("llama", {
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072,
        "rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "rms_norm_eps": 1e-5, "tie_word_embeddings": True}),
    "llama-tiny-32k": ("llama", {
        "vocab_size": 32000, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048,
        "rope_theta": 1e4, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}),
}


def add_model_arguments(parser) -> None:
    """`--preset` / `--model-dir` (one or neither: neither is the benchmark's tiny character Llama)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=list(PRESETS),
                       help="a random-init model of a real architecture (benchmarks/side_by_side.py PRESETS)")
    group.add_argument("--model-dir", help="use this model folder instead of building the tiny Llama")
    parser.add_argument("--attn", default="auto", choices=["auto", "sdpa", "eager", "flash_attention_2"],
                        help="attention of both sides (auto: flash_attention_2 on CUDA with flash-attn, else sdpa)")


def attention_for(device: str, requested: str = "auto") -> str:
    """The attention implementation both sides of a training benchmark use: `requested` unless "auto";
    auto is flash_attention_2 on CUDA when the flash-attn package works there (transformers' own check),
    else sdpa. (podium keeps prefix sharing only under sdpa or eager: under flash it uses TRL's layout.)"""
    from transformers.utils import is_flash_attn_2_available

    if requested != "auto":
        return requested
    return "flash_attention_2" if device == "cuda" and is_flash_attn_2_available() else "sdpa"


def padded_tokenizer(vocab_size: int):
    """podium's character chat tokenizer (podium.models.tiny) with unused tokens `<|unused_i|>` appended up to
    `vocab_size`: every id a preset model can sample decodes to a token, in podium, TRL and vLLM alike. Text
    still tokenises to the characters, so a benchmark's sequences are as long as with the tiny model."""
    import json as _json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from podium.models.tiny import CHAT_TEMPLATE, EOS, PAD, ROLE_TOKENS, UNK, build_tokenizer

    state = _json.loads(build_tokenizer().backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    vocab.update({f"<|unused_{i}|>": i for i in range(len(vocab), vocab_size)})
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_json.dumps(state)), pad_token=PAD,
                                   unk_token=UNK, eos_token=EOS, additional_special_tokens=ROLE_TOKENS,
                                   clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def preset_config(name: str, tokenizer=None):
    """The transformers config of preset `name`, with the (padded) tokenizer's special token ids."""
    from transformers import AutoConfig

    model_type, fields = PRESETS[name]
    fields = dict(fields)
    rope = {"rope_type": "default", "rope_theta": fields.pop("rope_theta")}
    rope.update(fields.pop("rope_scaling", {}))
    ids = {"pad_token_id": 0, "eos_token_id": 2} if tokenizer is None else {
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    return AutoConfig.for_model(model_type, rope_parameters=rope, bos_token_id=None, **ids, **fields)


def preset_parameters(config) -> int:
    """Parameter count of a model with `config` (tied weights once), from a meta-device build: no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_preset(name: str, *, dtype=None, seed: int = 0, attn_implementation: str | None = None):
    """(model, tokenizer) of preset `name`, random-init on CPU in `dtype` (default float32), in seconds.

    transformers' own initialisation is skipped (it fills every tensor twice, minutes for 1B on one core);
    instead, under a fixed seed, every matrix gets N(0, 0.02) (the configs' initializer_range, as HF's
    `_init_weights`), norms 1 and biases 0. The rotary frequencies are computed at construction."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    sys.path.insert(0, str(ROOT / "src"))
    tok = padded_tokenizer(PRESETS[name][1]["vocab_size"])
    config = preset_config(name, tok)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32,
                                                 attn_implementation=attn_implementation)
    model.tie_weights()  # skipped under no_init_weights
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():  # tied weights are listed once
            if p.dim() >= 2:
                p.normal_(0.0, config.initializer_range, generator=gen)
            elif pname.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


def benchmark_model(args, model_config: dict, prefix: str) -> tuple[Path, int | None]:
    """A scratch folder and the model both sides load: `--model-dir` as given; `--preset` built with
    `build_preset` (bfloat16 with `--device cuda`, else float32) and saved there; else podium's tiny Llama
    built with `model_config` and saved there. Sets `args.model`; returns (folder, parameter count or None)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix=prefix))
    if args.model_dir:
        args.model = args.model_dir
        return work, None
    if getattr(args, "preset", None):
        import torch

        t = time.perf_counter()
        model, tok = build_preset(args.preset, dtype=torch.bfloat16 if args.device == "cuda" else torch.float32)
        built = time.perf_counter() - t
        args.model = str(save_model(model, tok, work / "model"))
        print(f"preset {args.preset}: built in {built:.1f} s, saved in {time.perf_counter() - t - built:.1f} s",
              flush=True)
    else:
        model, tok = build_tiny_model(seed=0, **model_config)
        args.model = str(save_model(model, tok, work / "model"))
    return work, sum(p.numel() for p in model.parameters())


class FlopCounter:
    """Model FLOPs (podium.training.flops.TrainingFlops) and real tokens of every training forward of a
    model that a peer's trainer calls: a forward pre-hook reading `input_ids`, `attention_mask` and
    `position_ids`, counting only forwards with gradients on (a reference pass under no_grad is left out).
    The FLOPs assume logits at every real token (what a full forward computes)."""

    def __init__(self, model):
        from podium.training.flops import TrainingFlops

        self.count = TrainingFlops.from_model(model)
        self.flops = 0.0
        self.tokens = 0
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        import torch

        if not torch.is_grad_enabled():
            return
        batch = {k: kwargs[k] for k in ("input_ids", "attention_mask", "position_ids") if kwargs.get(k) is not None}
        if "input_ids" not in batch and args:
            batch["input_ids"] = args[0]
        if "input_ids" not in batch:
            return
        mask = batch.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None and mask.dim() == 2 else batch["input_ids"].numel()
        self.flops += self.count(batch)


def podium_step_totals(records: list[dict], batch: int) -> tuple[float, float]:
    """(seconds, model FLOPs) of podium's training steps, from its metrics.jsonl records (one per step):
    a step took batch / examples-per-second and did flops_per_second x that."""
    seconds = flops = 0.0
    for r in records:
        rate = next(v for k, v in r.items() if k.endswith("_per_second") and k not in ("tokens_per_second",
                                                                                        "flops_per_second"))
        dt = batch / rate
        seconds += dt
        flops += r.get("flops_per_second", 0.0) * dt
    return seconds, flops


def decode_flops_per_token(model) -> float:
    """Model FLOPs of one decoded token: 2 x the matmul parameters applied to it (podium.training.flops's
    N_body and the LM head). Attention over the cache and the prompts' prefill are left out: a lower bound."""
    from podium.training.flops import TrainingFlops

    shape = TrainingFlops.from_model(model)
    return 2.0 * (shape.body + shape.head)


def peak_for(device: str) -> float:
    """The peak matmul FLOP/s podium's MFU divides by: bf16 on CUDA, fp32 on CPU (training/flops.py)."""
    import torch

    from podium.training.flops import peak_flops

    return peak_flops(device, torch.bfloat16 if device == "cuda" else torch.float32)


def print_absolute(pod: list[dict], peer: list[dict], tokens_key: str, peer_name: str = "TRL") -> None:
    """Absolute training-loop tokens/s and MFU of both sides (each run's `loop_tokens_per_s` and `loop_mfu`)."""
    for side, rs in ((peer_name, peer), ("podium", pod)):
        tps = " ".join(f"{r['loop_tokens_per_s']:.0f}" for r in rs)
        mfu = " ".join(f"{r['loop_mfu']:.3f}" if r.get("loop_mfu") is not None else "-" for r in rs)
        print(f"  {side:7} training loop: {tps} {tokens_key}/s; MFU {mfu}")


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
