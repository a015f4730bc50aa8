"""What `podium run` prints per training stage of a plan: its memory estimate (`podium.training.memory`) on the
launch it will run under, and whether that fits the device."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from podium.models.tiny import build_tokenizer
from podium.training.memory import DTYPE_BYTES, GiB, ModelShape, TrainingSetup, estimate, read_shape


def fmt_gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def fits(peak: int, device_bytes: float | None) -> str:
    if device_bytes is None:
        return "device memory unknown"
    verdict = "fits" if peak <= device_bytes else "does NOT fit"
    return f"{verdict} {fmt_gib(device_bytes)} per device ({100 * peak / device_bytes:.0f} %)"


def stage_memory_lines(name: str, shape: ModelShape, setup: TrainingSetup, device_bytes: float | None, where: str) -> list[str]:
    """The lines `podium run` prints for one training stage."""
    e = estimate(shape, setup)
    label = {"fsdp2": "FSDP2 (podium)", "zero3": "DeepSpeed ZeRO-3 (accelerate)"}.get(setup.sharding, (
        "replicated (DDP)" if setup.processes > 1 else "one process"))
    if setup.cpu_offload:
        label += ", CPU offload"
    if setup.offload_optimizer:
        label += ", optimizer offloaded to CPU"
    lines = [f"[{name}] memory per process, {setup.processes} process{'es' if setup.processes != 1 else ''}, "
             f"{label}: peak ~{fmt_gib(e.peak)} ({shape.parameters / 1e9:.2f}B parameters"
             f"{f', LoRA r{setup.lora_r}' if setup.lora_r else ''}): parameters {fmt_gib(e.parameters)}, gradients "
             f"{fmt_gib(e.gradients)}, optimizer {fmt_gib(e.optimizer)}, activations {fmt_gib(e.activations)}, "
             f"logits {fmt_gib(e.logits)}" + (f"; host memory {fmt_gib(e.host)} per process" if e.host else "")]
    lines.append(f"[{name}]   {fits(e.peak, device_bytes)} ({where})")
    return lines


TRAINING_KINDS = ("sft", "train", "selfplay")


def train_settings(kind: str, cfg) -> dict:
    """The loop settings of a training stage's config (selfplay: its `train:`), as a dict."""
    if kind == "selfplay":
        inner = getattr(cfg, "train", None) or {}
        return inner if isinstance(inner, dict) else inner.model_dump()
    return cfg.model_dump()


def model_shape(source, stages_by_dir: dict) -> ModelShape | None:
    """The shape of a stage's input model: its folder's config.json, an upstream stage's input (not built yet),
    a tiny_model stage's settings, a merge's base model, or a known Hub id."""
    path = Path(str(source))
    planned = stages_by_dir.get(str(path.resolve())) if not (path / "config.json").is_file() else None
    if planned is None:
        return read_shape(source)
    kind, cfg = planned.kind, planned.config
    if kind == "tiny_model":
        return ModelShape(vocab_size=len(build_tokenizer()), hidden_size=cfg.hidden_size,
                          intermediate_size=cfg.intermediate_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                          num_kv_heads=cfg.num_kv_heads or cfg.num_heads, head_dim=cfg.hidden_size // cfg.num_heads,
                          tie_word_embeddings=cfg.tie_word_embeddings)
    if kind in TRAINING_KINDS:
        return model_shape(cfg.model, stages_by_dir)
    if kind == "merge":
        merge = cfg.config if isinstance(cfg.config, dict) else {}
        base = merge.get("base_model") or next((m.get("model") for m in merge.get("models") or [] if isinstance(m, dict)),
                                               None)
        if base is None:
            for piece in merge.get("slices") or []:
                for src in piece.get("sources") or []:
                    base = base or src.get("model")
        return model_shape(base, stages_by_dir) if base else None
    return None


def stage_setup(kind: str, cfg, launch) -> TrainingSetup:
    """How one process of a planned training stage runs (`launch`: its LaunchSpec, or None in-process)."""
    s = train_settings(kind, cfg)
    dtype = str(s.get("dtype") or getattr(cfg, "dtype", None) or "float32")
    weight = DTYPE_BYTES.get(dtype, 4)
    mixed = launch.mixed_precision if launch is not None else "no"
    compute = 2 if mixed in ("bf16", "fp16") else weight
    lora = s.get("lora") or getattr(cfg, "lora", None)
    lora_r = (lora.get("r", 16) if isinstance(lora, dict) else getattr(lora, "r", None)) if lora else None
    pairs = kind != "sft"
    processes = launch.num_processes if launch is not None else 1
    on_cpu = launch.on_cpu if launch is not None else not torch.cuda.is_available()
    # Softmax probabilities are kept by eager attention, and by sdpa's math kernel (CPU); flash and memory-efficient
    # kernels (GPUs) keep none. An estimate for named GPUs (gpu_memory_gb) is a GPU estimate.
    eager = str(s.get("attn_implementation") or "") == "eager"
    on_cpu = on_cpu and not getattr(launch, "gpu_memory_gb", None)
    setup = dict(processes=processes, weight_bytes=weight, compute_bytes=compute, optimizer=str(s.get("optimizer", "adamw")),
                 lora_r=lora_r, batch_size=int(s.get("batch_size") or 1), sequences_per_example=2 if pairs else 1,
                 max_length=int(s.get("max_length") or 512), attention_probs=on_cpu or eager)
    checkpointing = bool(s.get("gradient_checkpointing"))
    if launch is not None and launch.fsdp is not None and processes > 1:
        f = launch.fsdp
        return TrainingSetup(sharding="fsdp2", cpu_offload=f.cpu_offload, reshard_after_forward=f.reshard_after_forward,
                             activation_checkpointing=checkpointing or f.activation_checkpointing, **setup)
    if launch is not None and launch.distributed_type == "DEEPSPEED" and "ZeRO-3" in launch.sharding:
        return TrainingSetup(sharding="zero3", offload_optimizer="offload to" in launch.sharding,
                             activation_checkpointing=checkpointing, **setup)
    return TrainingSetup(activation_checkpointing=checkpointing, **setup)


def device_memory(launch) -> tuple[float | None, str]:
    """Bytes of memory per process on the devices the launch names, and where the number comes from."""
    gb = getattr(launch, "gpu_memory_gb", None) if launch is not None else None
    if gb:
        return gb * 1e9, f"launch.gpu_memory_gb: {gb:g}"
    on_cpu = launch.on_cpu if launch is not None else not torch.cuda.is_available()
    if not on_cpu and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return float(props.total_memory), f"visible GPU 0: {props.name}"
    processes = launch.num_processes if launch is not None else 1
    try:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None, "no GPU; host memory unknown"
    per = host / max(1, processes // (launch.num_machines if launch is not None else 1))
    return float(per), f"no GPU: this machine's {fmt_gib(host)} of memory shared by its processes"


def plan_memory_lines(stages) -> list[str]:
    """For every training stage of a plan (planned stages: `.name`, `.kind`, `.config`, `.launch`, `.out_dir`,
    `.status`), the estimate lines; a stage whose model shape is unknown says so."""
    by_dir = {str(Path(ps.out_dir).resolve()): ps for ps in stages}
    lines = []
    for ps in stages:
        if ps.kind not in TRAINING_KINDS or ps.status == "cached":
            continue
        try:  # an estimate is advice: a shape or setting it cannot read must not stop the run
            shape = model_shape(ps.config.model, by_dir)
            if shape is None:
                lines.append(f"[{ps.name}] memory per process: unknown (no config.json for {ps.config.model})")
                continue
            device, where = device_memory(ps.launch)
            lines += stage_memory_lines(ps.name, shape, stage_setup(ps.kind, ps.config, ps.launch), device, where)
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as e:
            lines.append(f"[{ps.name}] memory per process: not estimated ({type(e).__name__}: {e})")
    return lines
