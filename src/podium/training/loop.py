"""The one training loop: accelerate, exact gradient accumulation, checkpoints, resume.

An objective turns a batch into `(loss_sum, per-example metrics)`; this loop owns
everything else. Losses are summed per unit (token or example) and divided by the
global count of the optimizer step, so `batch_size x gradient_accumulation_steps x
processes` with the same product gives the same update.

Data order is a function of (seed, step): epoch e uses the permutation seeded by
`seed + e`, and step s takes the s-th global batch of it. A resumed run therefore
sees exactly the batches an uninterrupted run would have seen.

Checkpoints hold safetensors and JSON only (podium.training.checkpoint): resuming never
unpickles anything from a run dir. A run that diverges (podium.training.divergence) fails
with the last checkpoint whose weights are finite named and kept.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from podium.data.records import write_text
from podium.distributed.world import all_gather_json, current_world
from podium.errors import PodiumError
from podium.models.io import check_vocab, save_model
from podium.training.checkpoint import is_real_dir, list_checkpoints, resumable_checkpoints, weights_are_finite
from podium.training.divergence import DivergenceGuard, weight_norm
from podium.training.flops import TrainingFlops, peak_flops
from podium.training.fsdp import (
    clip_grad_norm,
    enable_gradient_checkpointing,
    full_state_dict,
    gradient_sync,
    shard_model,
    sharded_weight_norm,
    state_bytes,
    training_settings,
)
from podium.training.fsdp_load import is_empty
from podium.training.host_heap import HeapTrimmer
from podium.training.settings import TrainSettings
from podium.training.sharded_checkpoint import first_sound, load_training_state, save_training_state

Objective = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def get_accelerator(report_to: Sequence[str] = (), out_dir: Path | None = None):
    """accelerate's Accelerator; with `report_to`, its experiment trackers log under `out_dir/tracking`."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if not report_to:
        return Accelerator()
    check_trackers(report_to)
    project = ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "tracking"))
    return Accelerator(log_with=list(report_to), project_config=project)


# report_to name -> the package its accelerate tracker needs.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}


def check_trackers(report_to: Sequence[str]) -> None:
    missing = [TRACKER_PACKAGES[t] for t in report_to if importlib.util.find_spec(TRACKER_PACKAGES[t]) is None]
    if missing:
        raise PodiumError(f"report_to {list(report_to)}: {', '.join(missing)} not installed (pip install "
                          f"{' '.join(missing)})")


def start_trackers(acc, report_to: Sequence[str], settings: TrainSettings, out: Path) -> None:
    """Open the run in each tracker (main process only), as TRL's `report_to` does through accelerate.

    Everything stays on this machine unless the tracker is told otherwise: TensorBoard and trackio write
    local files, MLflow its MLFLOW_TRACKING_URI (default ./mlruns), and W&B without an API key or
    WANDB_MODE runs offline into `out/tracking` (`wandb sync` uploads it later).
    """
    if "wandb" in report_to and not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    config = {k: v for k, v in settings.model_dump().items() if isinstance(v, (bool, int, float, str))}
    acc.init_trackers(out.name, config=config, init_kwargs={
        "wandb": {"name": out.name, "dir": str(out / "tracking")}, "mlflow": {"run_name": out.name}})


def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    if s.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.learning_rate, weight_decay=s.weight_decay)


def make_scheduler(optimizer, s: TrainSettings, total_steps: int):
    warmup = math.ceil(s.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if s.lr_scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if s.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_indices(n: int, step: int, global_batch: int, steps_per_epoch: int, seed: int, shuffle: bool) -> list[int]:
    """Example indices of global batch `step` (deterministic in seed and step)."""
    epoch, within = divmod(step, steps_per_epoch)
    order = list(range(n))
    if shuffle:
        random.Random(seed + epoch).shuffle(order)
    return order[within * global_batch : (within + 1) * global_batch]


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


def train_loop(
    model: torch.nn.Module,
    objective: Objective,
    examples: Sequence,
    collate: Callable[[list], dict],
    settings: TrainSettings,
    out_dir: str | os.PathLike,
    *,
    tokenizer=None,
    example_unit: str = "examples",
    save_final: Callable[[torch.nn.Module, Path], None] | None = None,
    log=None,
    show_progress: bool = True,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    evaluate_every: int = 0,
    stop_when: Callable[[dict], bool] | None = None,
) -> dict:
    """Train `model` on `examples`; returns summary metrics of the run.

    With `evaluate`, every `evaluate_every` steps the step's record gets `eval/<key>` entries;
    `stop_when(record)` returning True there ends training after that step (e.g. a target
    accuracy reached). Evaluation is deterministic, so a resumed run stops at the same step.

    Writes `out_dir/metrics.jsonl` (one line per optimizer step), checkpoints under
    `out_dir/checkpoints/step-N` (complete once renamed into place) and, at the end,
    the model via `save_final(model, out_dir)` (default: safetensors + tokenizer). Under FSDP / ZeRO-3 the
    weights are gathered first and passed on as `save_final(model, out_dir, state_dict=...)`.
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    metrics_path = out / "metrics.jsonl"
    refuse_links(ckpt_dir, metrics_path)
    check_vocab(model, tokenizer)
    s = settings
    if not any(p.requires_grad for p in model.parameters()):
        raise PodiumError("the model has no trainable parameters")
    acc = get_accelerator(s.report_to, out)
    if s.report_to:
        start_trackers(acc, s.report_to, s, out)
    world, rank = acc.num_processes, acc.process_index
    per_rank = s.batch_size * s.gradient_accumulation_steps
    global_batch = per_rank * world
    n = len(examples)
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise PodiumError(
            f"dataset has {n} examples, fewer than one global batch ({s.batch_size} x "
            f"{s.gradient_accumulation_steps} accumulation x {world} processes = {global_batch})"
        )
    total_steps = s.max_steps or max(1, math.ceil(s.epochs * steps_per_epoch))

    torch.manual_seed(s.seed)
    flops, peak = model_flops(model, acc.device)
    # podium's FSDP2 (training/fsdp.py): the model is sharded here, not wrapped by accelerate.
    fsdp = training_settings(acc)
    if s.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if fsdp is not None:
        model = shard_model(model, fsdp, acc.device)
    elif is_empty(model):  # built for rank-local loading (training/fsdp_load.py), which only sharding fills
        raise PodiumError("the model was built empty for FSDP2's rank-local loading, but this run does not shard it "
                          f"({acc.num_processes} process(es), {acc.distributed_type.value}); set launch: "
                          "{fsdp: {rank_local_load: false}} and report this launch")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, s)
    scheduler = make_scheduler(optimizer, s, total_steps)
    if fsdp is None:
        # The scheduler is not prepared: accelerate would step it once per process.
        model, optimizer = acc.prepare(model, optimizer)
    guard = DivergenceGuard(enabled=s.detect_divergence)
    heap = HeapTrimmer(acc.device)
    replicated = fsdp is None and weights_replicated(acc)
    norm = weight_norm if replicated else sharded_weight_norm if fsdp is not None else None

    start_step = 0
    found = resumable_checkpoints(ckpt_dir, log if acc.is_main_process else None)
    if not replicated and fsdp is None and (s.save_steps or found):
        raise PodiumError(
            f"checkpoints (save_steps: {s.save_steps}) are written and resumed under one process, DDP or podium's "
            f"FSDP2; under accelerate's {acc.distributed_type.value} the model and optimizer are sharded in a way "
            "podium's pickle-free checkpoints do not cover: set save_steps: 0, or launch with `fsdp: true`"
        )
    if found := first_sound(found, log if acc.is_main_process else None):
        start_step, path, state = found
        if state.get("global_batch", global_batch) != global_batch:
            raise PodiumError(
                f"{path} was written with a global batch of {state['global_batch']} examples, this run has "
                f"{global_batch}: the resumed data order would differ; keep batch_size x gradient_accumulation_steps "
                "x processes as it was, or remove the checkpoints folder to start over"
            )
        load_training_state(acc, model, optimizer, scheduler, path, state, log, sharded=fsdp is not None)
        guard.load_state_dict(state.get("divergence", {}))
        if log and acc.is_main_process:
            log.info(f"resuming from {path} (step {start_step} of {total_steps})")
    if norm is not None:  # accelerate's FSDP / ZeRO-3 shards podium cannot read: loss and grad checks stay
        guard.start(norm(params))
    if acc.is_main_process:
        keep_metrics_until(metrics_path, start_step)

    model.train()
    progress = None
    if show_progress and acc.is_main_process:
        progress = tqdm(total=total_steps, initial=start_step, desc=f"train {out.name}", unit="step", dynamic_ncols=True)

    last, held = {}, {}
    run_flops = run_step_seconds = 0.0
    steps_done = total_steps
    t_run = time.perf_counter()
    for step in range(start_step, total_steps):
        t0 = time.perf_counter()
        idx = step_indices(n, step, global_batch, steps_per_epoch, s.seed, s.shuffle)
        mine = idx[rank * per_rank : (rank + 1) * per_rank]
        batches = [collate([examples[i] for i in mine[j : j + s.batch_size]]) for j in range(0, per_rank, s.batch_size)]
        step_flops = sum(flops(b) for b in batches) if flops else 0.0
        heap.before_step(batches)  # host memory only (training/host_heap.py)
        count = torch.tensor(float(sum(b["count"] for b in batches)), device=acc.device)
        global_count = acc.reduce(count, reduction="sum") if world > 1 else count
        loss_total = torch.zeros((), device=acc.device)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}  # per metric: examples it covers (NaN marks one it does not, as KTO's)
        n_tokens = 0
        for j, batch in enumerate(batches):
            batch = {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            sync = j == len(batches) - 1
            ctx = (gradient_sync(model, sync) if fsdp is not None else acc.no_sync(model) if not sync and world > 1
                   else nullcontext())
            with ctx:
                loss_sum, metrics = objective(model, batch)
                # DDP averages gradients over processes; scale back to a global sum / count.
                acc.backward(loss_sum * world / global_count)
            loss_total += loss_sum.detach()
            for k, v in metrics.items():
                v = v.detach().float()
                seen = ~v.isnan()
                sums[k] = sums.get(k, 0) + torch.where(seen, v, 0.0).sum()
                counts[k] = counts.get(k, 0) + seen.sum()
            n_tokens += int(batch.get("num_tokens", 0))
        if world > 1:
            loss_total = acc.reduce(loss_total, reduction="sum")
            sums = {k: acc.reduce(v, reduction="sum") for k, v in sums.items()}
            counts = {k: acc.reduce(v, reduction="sum") for k, v in counts.items()}
            n_tokens, step_flops = acc.reduce(torch.tensor([float(n_tokens), step_flops], device=acc.device),
                                              reduction="sum").tolist()
            n_tokens = int(n_tokens)
        loss_value = (loss_total / global_count).item()
        if reason := guard.check_loss(loss_value):
            diverged(acc, ckpt_dir, guard, reason, step, applied=False)
        if fsdp is not None:
            grad_norm = clip_grad_norm(params, s.max_grad_norm)
        else:
            grad_norm = acc.clip_grad_norm_(params, s.max_grad_norm or float("inf"))
            grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        if reason := guard.check_grad(grad_norm, loss_value):
            diverged(acc, ckpt_dir, guard, reason, step, applied=False)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        if step == start_step:  # what this process holds once gradients and optimizer state exist
            held = rank_memory(model, optimizer, log if acc.is_main_process else None)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        w_norm = norm(params) if norm is not None else None
        if w_norm is not None and (reason := guard.check_weights(w_norm)):
            diverged(acc, ckpt_dir, guard, reason, step, applied=True)
        dt = time.perf_counter() - t0

        record = {"step": step + 1, "epoch": round((step + 1) / steps_per_epoch, 4), "loss": loss_value}
        record.update({k: (v / counts[k]).item() for k, v in sums.items() if counts[k] > 0})
        record.update({"grad_norm": grad_norm, **({"weight_norm": w_norm} if w_norm is not None else {}), "lr": lr,
                       f"{example_unit}_per_second": global_batch / dt})
        if n_tokens:
            record["tokens_per_second"] = n_tokens / dt
        if step_flops:  # model FLOPs of the step over its time, and that over the hardware's peak (training/flops.py)
            record["flops_per_second"] = step_flops / dt
            record["mfu"] = step_flops / dt / (peak * world)
            run_flops, run_step_seconds = run_flops + step_flops, run_step_seconds + dt
        stop = False
        if evaluate is not None and evaluate_every and ((step + 1) % evaluate_every == 0 or step + 1 == total_steps):
            record.update({f"eval/{k}": v for k, v in evaluate(acc.unwrap_model(model)).items()})
            model.train()
            stop = stop_when is not None and step + 1 < total_steps and bool(stop_when(record))
        last = record
        if acc.is_main_process and ((step + 1) % s.logging_steps == 0 or step + 1 == total_steps or stop):
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if s.report_to:
                acc.log(record, step=step + 1)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        if stop:
            steps_done = step + 1
            if log and acc.is_main_process:
                log.info(f"stopping after step {steps_done} of {total_steps}: the stop condition holds")
            break
        if s.save_steps and (step + 1) % s.save_steps == 0 and step + 1 < total_steps:
            extra = {"step": step + 1, "global_batch": global_batch, "weight_norm": w_norm,
                     "divergence": guard.state_dict()}
            save_checkpoint(acc, model, optimizer, scheduler, ckpt_dir, extra, s.save_total_limit, sharded=fsdp is not None)

    if progress is not None:
        progress.close()
    acc.wait_for_everyone()
    unwrapped = acc.unwrap_model(model)
    # Sharded weights (FSDP, ZeRO-3) are gathered into one state dict; every rank takes part in the gather.
    full_state = (None if replicated else full_state_dict(model, acc.is_main_process) if fsdp is not None
                  else acc.get_state_dict(model))
    if acc.is_main_process:
        if save_final is None:
            save_model(unwrapped, tokenizer, out, state_dict=full_state)
        elif full_state is None:
            save_final(unwrapped, out)
        else:
            save_final(unwrapped, out, state_dict=full_state)
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
    acc.wait_for_everyone()
    if s.report_to:
        # Not acc.end_training(): it also ends the process group, which the stage may still need.
        for tracker in acc.trackers:
            tracker.finish()
    summary = {k: v for k, v in last.items() if k not in ("step", "epoch")}
    summary.update({"steps": steps_done, "train_seconds": time.perf_counter() - t_run, **held})
    if run_step_seconds:  # over the run's steps, not the last one's
        summary.update({"flops_per_second": run_flops / run_step_seconds,
                        "mfu": run_flops / run_step_seconds / (peak * world), "peak_flops_per_second": peak * world})
    return summary


def model_flops(model, device) -> tuple[TrainingFlops | None, float]:
    """The FLOP count of `model`'s training batches and the device's peak FLOP/s; (None, 0) for a model
    whose shape podium cannot read (no transformers config): such a run logs no MFU."""
    try:
        flops = TrainingFlops.from_model(model)
    except ValueError:
        return None, 0.0
    dtype = next(model.parameters()).dtype
    return flops, peak_flops(device, dtype)


def rank_memory(model, optimizer, log=None) -> dict[str, float]:
    """Bytes of parameters, gradients and optimizer state per process (local shards under FSDP2): the
    largest over the processes and their sum, as `memory/<what>_bytes` and `memory/<what>_bytes_total`."""
    mine = state_bytes(model, optimizer)
    ranks = all_gather_json(mine, current_world())
    out = {}
    for what in mine:
        out[f"memory/{what}_bytes"] = float(max(r[what] for r in ranks))
        out[f"memory/{what}_bytes_total"] = float(sum(r[what] for r in ranks))
    if log:
        log.info("held per process (MiB): " + "; ".join(
            f"rank {i}: " + ", ".join(f"{k} {v / 2**20:.2f}" for k, v in r.items()) for i, r in enumerate(ranks)))
    return out


def diverged(acc, ckpt_dir: Path, guard: DivergenceGuard, reason: str, step: int, applied: bool):
    """Fail the stage: name the last checkpoint with finite weights (the final model is not written)."""
    good = None
    if acc.is_main_process:
        good = last_good_checkpoint(ckpt_dir, guard)
    acc.wait_for_everyone()
    kept = f"; last good checkpoint: {good[1]}" if good else "; no earlier checkpoint with sound weights to keep"
    when = "the step was applied; its weights are not saved" if applied else "the step was not applied"
    raise PodiumError(f"training diverged: {reason} at step {step + 1}{kept} ({when}). "
                      "Lower learning_rate or max_grad_norm; `detect_divergence: false` turns off the "
                      "ratio and zero-gradient checks (podium.training.divergence)")


def save_checkpoint(acc, model, optimizer, scheduler, ckpt_dir: Path, extra: dict, keep: int,
                    sharded: bool = False) -> None:
    """Save the full training state; the folder appears under its final name only when complete."""
    step = extra["step"]
    final = ckpt_dir / f"step-{step}"
    tmp = ckpt_dir / f".tmp-step-{step}"
    if acc.is_main_process:
        if tmp.is_symlink():
            tmp.unlink()
        elif tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    save_training_state(acc, model, optimizer, scheduler, tmp, extra, sharded=sharded)
    acc.wait_for_everyone()
    if acc.is_main_process:
        if final.is_symlink():
            final.unlink()
        elif final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, p in list_checkpoints(ckpt_dir)[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop logged steps after `step` (they will be logged again by the resumed run)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in keep))

