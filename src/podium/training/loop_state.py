"""A training run's state between optimizer steps: the accelerator, the placed model, optimizer and schedule,
the batch geometry, the divergence guard (`start_run`), and the step it continues from (`resume_run`).

Part of `podium.training.loop`, which reads top to bottom over these pieces.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from podium.distributed.fsdp import enable_gradient_checkpointing, shard_model, sharded_weight_norm, training_settings
from podium.distributed.fsdp_load import is_empty
from podium.errors import PodiumError
from podium.files import write_text
from podium.models.io import check_vocab
from podium.training.checkpoint import is_real_dir, resumable_checkpoints, weights_are_finite
from podium.training.divergence import DivergenceGuard, weight_norm
from podium.training.flops import TrainingFlops, peak_flops
from podium.training.host_heap import HeapTrimmer
from podium.training.optimizer import make_optimizer, make_scheduler
from podium.training.settings import TrainSettings
from podium.training.trackers import get_accelerator, start_trackers
from podium.training.training_state import first_sound, load_training_state


@dataclass
class Run:
    """What a training run holds from one optimizer step to the next."""

    settings: TrainSettings
    out: Path
    acc: Any  # accelerate.Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    params: list[torch.nn.Parameter]
    fsdp: Any  # podium's FSDP2 settings, None when accelerate places the model (training_settings)
    replicated: bool  # every process holds the whole model and optimizer (weights_replicated)
    norm: Callable | None  # the weight norm the divergence guard watches, None where podium cannot read it
    guard: DivergenceGuard
    heap: HeapTrimmer
    flops: TrainingFlops | None
    peak: float  # the device's peak FLOP/s (0: unknown)
    n: int  # examples
    per_rank: int  # examples per process per optimizer step
    global_batch: int
    steps_per_epoch: int
    total_steps: int

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def world(self) -> int:
        return self.acc.num_processes

    @property
    def main(self) -> bool:
        return self.acc.is_main_process


def start_run(model: torch.nn.Module, n: int, s: TrainSettings, out: Path, tokenizer) -> Run:
    """Check the run's inputs, start accelerate, and place the model, its optimizer and schedule."""
    out.mkdir(parents=True, exist_ok=True)
    refuse_links(out / "checkpoints", out / "metrics.jsonl")
    check_vocab(model, tokenizer)
    if not any(p.requires_grad for p in model.parameters()):
        raise PodiumError("the model has no trainable parameters")
    acc = get_accelerator(s.report_to, out)
    if s.report_to:
        start_trackers(acc, s.report_to, s, out)
    world = acc.num_processes
    per_rank = s.batch_size * s.gradient_accumulation_steps
    global_batch = per_rank * world
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise PodiumError(
            f"dataset has {n} examples, fewer than one global batch ({s.batch_size} x "
            f"{s.gradient_accumulation_steps} accumulation x {world} processes = {global_batch})"
        )
    total_steps = s.max_steps or max(1, math.ceil(s.epochs * steps_per_epoch))

    torch.manual_seed(s.seed)
    flops, peak = model_flops(model, acc.device)
    model, fsdp = place_model(model, acc, s)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, s)
    scheduler = make_scheduler(optimizer, s, total_steps)
    if fsdp is None:
        # The scheduler is not prepared: accelerate would step it once per process.
        model, optimizer = acc.prepare(model, optimizer)
    replicated = fsdp is None and weights_replicated(acc)
    return Run(settings=s, out=out, acc=acc, model=model, optimizer=optimizer, scheduler=scheduler, params=params,
               fsdp=fsdp, replicated=replicated,
               norm=weight_norm if replicated else sharded_weight_norm if fsdp is not None else None,
               guard=DivergenceGuard(enabled=s.detect_divergence), heap=HeapTrimmer(acc.device), flops=flops,
               peak=peak, n=n, per_rank=per_rank, global_batch=global_batch, steps_per_epoch=steps_per_epoch,
               total_steps=total_steps)


def place_model(model: torch.nn.Module, acc, s: TrainSettings):
    """(model, fsdp settings): sharded by podium's FSDP2 (distributed/fsdp.py) when the launch asks for it, not
    wrapped by accelerate; as it is otherwise (accelerate prepares it with the optimizer)."""
    fsdp = training_settings(acc)
    if s.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if fsdp is not None:
        model = shard_model(model, fsdp, acc.device)
    elif is_empty(model):  # built for rank-local loading (distributed/fsdp_load.py), which only sharding fills
        raise PodiumError("the model was built empty for FSDP2's rank-local loading, but this run does not shard it "
                          f"({acc.num_processes} process(es), {acc.distributed_type.value}); set launch: "
                          "{fsdp: {rank_local_load: false}} and report this launch")
    return model, fsdp


def resume_run(run: Run, log=None) -> int:
    """The step the run continues from: that of the newest sound checkpoint (its model, optimizer, schedule and
    guard state loaded), else 0. Logged steps after it are dropped; they are logged again."""
    s, acc, log_main = run.settings, run.acc, log if run.main else None
    start_step = 0
    found = resumable_checkpoints(run.ckpt_dir, log_main)
    if not run.replicated and run.fsdp is None and (s.save_steps or found):
        raise PodiumError(
            f"checkpoints (save_steps: {s.save_steps}) are written and resumed under one process, DDP or podium's "
            f"FSDP2; under accelerate's {acc.distributed_type.value} the model and optimizer are sharded in a way "
            "podium's pickle-free checkpoints do not cover: set save_steps: 0, or launch with `fsdp: true`"
        )
    if found := first_sound(found, log_main):
        start_step, path, state = found
        if state.get("global_batch", run.global_batch) != run.global_batch:
            raise PodiumError(
                f"{path} was written with a global batch of {state['global_batch']} examples, this run has "
                f"{run.global_batch}: the resumed data order would differ; keep batch_size x gradient_accumulation_steps "
                "x processes as it was, or remove the checkpoints folder to start over"
            )
        load_training_state(acc, run.model, run.optimizer, run.scheduler, path, state, log,
                            sharded=run.fsdp is not None)
        run.guard.load_state_dict(state.get("divergence", {}))
        if log and run.main:
            log.info(f"resuming from {path} (step {start_step} of {run.total_steps})")
    if run.norm is not None:  # accelerate's FSDP / ZeRO-3 shards podium cannot read: loss and grad checks stay
        run.guard.start(run.norm(run.params))
    if run.main:
        keep_metrics_until(run.metrics_path, start_step)
    return start_step


def model_flops(model, device) -> tuple[TrainingFlops | None, float]:
    """The FLOP count of `model`'s training batches and the device's peak FLOP/s; (None, 0) for a model
    whose shape podium cannot read (no transformers config): such a run logs no MFU."""
    try:
        flops = TrainingFlops.from_model(model)
    except ValueError:
        return None, 0.0
    dtype = next(model.parameters()).dtype
    return flops, peak_flops(device, dtype)


def weights_replicated(acc) -> bool:
    """Whether every process holds the whole model and optimizer (one process, or DDP)."""
    kind = getattr(acc.distributed_type, "value", str(acc.distributed_type))
    return kind == "NO" or kind.startswith("MULTI_")


def refuse_links(*paths: Path) -> None:
    """The loop writes these; through a symbolic link it would write outside the run dir."""
    for p in paths:
        if p.is_symlink():
            raise PodiumError(f"{p} is a symbolic link; podium writes its training state only into the run dir "
                              "itself: remove the link")
        if p.name == "checkpoints" and p.exists() and not is_real_dir(p):
            raise PodiumError(f"{p} is not a folder; remove it so podium can write checkpoints there")


def last_good_checkpoint(ckpt_dir: Path, guard: DivergenceGuard) -> tuple[int, Path] | None:
    """The newest checkpoint whose weights are finite and passed the guard; newer ones are removed.

    Checkpoints are only written after the step's checks passed, so this normally is the newest;
    the weights are verified anyway before a folder is named as good.
    """
    for step, path, state in resumable_checkpoints(ckpt_dir):
        if guard.weights_ok(state.get("weight_norm")) and weights_are_finite(path):
            return step, path
        shutil.rmtree(path, ignore_errors=True)
    return None


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop logged steps after `step` (they will be logged again by the resumed run)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in keep))

