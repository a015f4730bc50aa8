"""Whether a stage's launch fits this machine (DeepSpeed installed, enough GPUs or CPU cores per machine), checked
for every launch of a run before its first stage starts."""

from __future__ import annotations

import importlib.util
import os

import torch

from podium.distributed.spec import LaunchSpec
from podium.errors import ConfigError


def environment_problems(spec: LaunchSpec) -> list[str]:
    """What stops this launch on this machine (checked before the first stage of a run starts)."""
    problems = []
    if spec.distributed_type == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        source = f"the accelerate config {spec.config_file}" if spec.config_file else "use_deepspeed"
        problems.append(f"{spec.where}: stage {spec.stage!r}: {source} uses DeepSpeed, which is not installed: "
                        "pip install 'podium[gpu]' (or pip install deepspeed)")
    per_machine = spec.num_processes // spec.num_machines
    if spec.on_cpu and spec.distributed_type == "DEEPSPEED" and spec.num_processes > 1:
        problems.append(f"{spec.where}: stage {spec.stage!r}: launch: DEEPSPEED runs on GPUs only (accelerate runs "
                        "CPU processes as DDP); use `fsdp: true` (podium's FSDP2 shards on CPU too) or DDP here")
    if spec.on_cpu:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if per_machine > cores:
            problems.append(f"{spec.where}: stage {spec.stage!r}: launch: {per_machine} processes per machine, "
                            f"but this machine has no GPU and {cores} CPU cores; set num_processes to at most "
                            f"{cores * spec.num_machines}")
    else:
        gpu_ids = spec.setting("gpu_ids")
        devices = torch.cuda.device_count()
        if gpu_ids not in (None, "all"):
            devices = min(devices, len(str(gpu_ids).split(",")))
        if per_machine > devices:
            problems.append(f"{spec.where}: stage {spec.stage!r}: launch: {per_machine} processes per machine, but "
                            f"this machine has {devices} GPUs for them; set num_processes to at most "
                            f"{devices * spec.num_machines}")
    return problems


def check_environment(specs: list[LaunchSpec]) -> None:
    """Every problem of these launches on this machine, as one ConfigError (nothing has started yet)."""
    problems = [p for spec in specs for p in environment_problems(spec)]
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))
