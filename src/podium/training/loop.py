"""The one training loop: accelerate, exact gradient accumulation, checkpoints, resume.

An objective turns a batch into `(loss_sum, per-example metrics)`; this loop owns
everything else. Losses are summed per unit (token or example) and divided by the
global count of the optimizer step, so `batch_size x gradient_accumulation_steps x
processes` with the same product gives the same update.

Data order is a function of (seed, step): epoch e uses the permutation seeded by
`seed + e`, and step s takes the s-th global batch of it (`optimizer.step_indices`). A resumed
run therefore sees exactly the batches an uninterrupted run would have seen.

Checkpoints hold safetensors and JSON only (podium.training.checkpoint): resuming never
unpickles anything from a run dir. A run that diverges (podium.training.divergence) fails
with the last checkpoint whose weights are finite named and kept.

`train_loop` reads top to bottom: start the run (`loop_state.start_run`), resume it, then per step the
micro-batches, one optimizer step over them (`optimizer_step`), the step's record, evaluation and the stop
condition, the metrics line and the checkpoint; at the end the final model and the run's summary.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from podium.distributed.fsdp import clip_grad_norm, full_state_dict, gradient_sync, state_bytes
from podium.distributed.world import all_gather_json, current_world
from podium.errors import PodiumError
from podium.models.io import save_model
from podium.training.checkpoint import list_checkpoints
from podium.training.divergence import DivergenceGuard
from podium.training.loop_state import Run, last_good_checkpoint, resume_run, start_run
from podium.training.optimizer import step_indices
from podium.training.settings import TrainSettings
from podium.training.step_record import StepDone, Throughput, run_summary, step_record
from podium.training.trackers import finish_trackers
from podium.training.training_state import save_training_state

Objective = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


# 64 lines, of which the signature is 17 and the docstring 11: the loop itself is the ~36 lines at the end.
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
    run = start_run(model, len(examples), settings, Path(out_dir), tokenizer)
    start_step = resume_run(run, log)
    run.model.train()
    progress = None
    if show_progress and run.main:
        progress = tqdm(total=run.total_steps, initial=start_step, desc=f"train {run.out.name}", unit="step",
                        dynamic_ncols=True)
    last, held, totals = {}, {}, Throughput()
    steps_done = run.total_steps
    t_run = time.perf_counter()
    for step in range(start_step, run.total_steps):
        t0 = time.perf_counter()
        batches = micro_batches(run, examples, collate, step)
        done = optimizer_step(run, objective, batches, step)
        if step == start_step:  # what this process holds once gradients and optimizer state exist
            held = rank_memory(run.model, run.optimizer, log if run.main else None)
        done.weight_norm = after_update(run, step)
        record = step_record(run, step, done, time.perf_counter() - t0, example_unit, totals)
        stop = evaluate_at(run, step, record, evaluate, evaluate_every, stop_when)
        last = record
        write_record(run, step, record, stop)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{done.loss:.4f}", lr=f"{done.lr:.2e}")
        if stop:
            steps_done = step + 1
            if log and run.main:
                log.info(f"stopping after step {steps_done} of {run.total_steps}: the stop condition holds")
            break
        if run.settings.save_steps and (step + 1) % run.settings.save_steps == 0 and step + 1 < run.total_steps:
            save_checkpoint(run.acc, run.model, run.optimizer, run.scheduler, run.ckpt_dir, checkpoint_extra(run, step, done),
                            run.settings.save_total_limit, sharded=run.fsdp is not None)
    if progress is not None:
        progress.close()
    finish_run(run, tokenizer, save_final)
    return run_summary(run, last, steps_done, time.perf_counter() - t_run, held, totals)


def micro_batches(run: Run, examples: Sequence, collate: Callable[[list], dict], step: int) -> list[dict]:
    """This process's share of global batch `step`, collated into `gradient_accumulation_steps` micro-batches."""
    s = run.settings
    idx = step_indices(run.n, step, run.global_batch, run.steps_per_epoch, s.seed, s.shuffle)
    mine = idx[run.acc.process_index * run.per_rank : (run.acc.process_index + 1) * run.per_rank]
    return [collate([examples[i] for i in mine[j : j + s.batch_size]]) for j in range(0, run.per_rank, s.batch_size)]


def optimizer_step(run: Run, objective: Objective, batches: list[dict], step: int) -> StepDone:
    """Forward and backward over the micro-batches (gradients synchronised on the last one only), the divergence
    checks on the loss and the gradient norm, clipping, and the optimizer's step. The scheduler steps in
    `after_update`, once the memory this process holds has been read."""
    acc, world, s = run.acc, run.world, run.settings
    step_flops = sum(run.flops(b) for b in batches) if run.flops else 0.0
    run.heap.before_step(batches)  # host memory only (training/host_heap.py)
    count = torch.tensor(float(sum(b["count"] for b in batches)), device=acc.device)
    global_count = acc.reduce(count, reduction="sum") if world > 1 else count
    loss_total = torch.zeros((), device=acc.device)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}  # per metric: examples it covers (NaN marks one it does not, as KTO's)
    n_tokens = 0
    for j, batch in enumerate(batches):
        batch = {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        sync = j == len(batches) - 1
        ctx = (gradient_sync(run.model, sync) if run.fsdp is not None else acc.no_sync(run.model)
               if not sync and world > 1 else nullcontext())
        with ctx:
            loss_sum, metrics = objective(run.model, batch)
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
    if reason := run.guard.check_loss(loss_value):
        diverged(acc, run.ckpt_dir, run.guard, reason, step, applied=False)
    if run.fsdp is not None:
        grad_norm = clip_grad_norm(run.params, s.max_grad_norm)
    else:
        grad_norm = acc.clip_grad_norm_(run.params, s.max_grad_norm or float("inf"))
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
    if reason := run.guard.check_grad(grad_norm, loss_value):
        diverged(acc, run.ckpt_dir, run.guard, reason, step, applied=False)
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    return StepDone(loss_value, sums, counts, n_tokens, step_flops, grad_norm, lr)


def after_update(run: Run, step: int) -> float | None:
    """Step the schedule, drop the gradients, and check the updated weights' norm (the step was applied);
    returns that norm (None where podium cannot read the weights)."""
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    w_norm = run.norm(run.params) if run.norm is not None else None
    if w_norm is not None and (reason := run.guard.check_weights(w_norm)):
        diverged(run.acc, run.ckpt_dir, run.guard, reason, step, applied=True)
    return w_norm


def evaluate_at(run: Run, step: int, record: dict, evaluate, evaluate_every: int, stop_when) -> bool:
    """Every `evaluate_every` steps and at the last one, add `eval/<key>` entries to the record; whether the
    stop condition holds there (never at the last step: the run ends anyway)."""
    last_step = step + 1 == run.total_steps
    if evaluate is None or not evaluate_every or not ((step + 1) % evaluate_every == 0 or last_step):
        return False
    record.update({f"eval/{k}": v for k, v in evaluate(run.acc.unwrap_model(run.model)).items()})
    run.model.train()
    return stop_when is not None and not last_step and bool(stop_when(record))


def write_record(run: Run, step: int, record: dict, stop: bool) -> None:
    """Append the record to metrics.jsonl (and the trackers) every `logging_steps`, at the last step and at a stop."""
    s = run.settings
    if run.main and ((step + 1) % s.logging_steps == 0 or step + 1 == run.total_steps or stop):
        with open(run.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if s.report_to:
            run.acc.log(record, step=step + 1)


def checkpoint_extra(run: Run, step: int, done: StepDone) -> dict:
    """What a checkpoint records beside the weights and optimizer: enough to resume the same data order and guard."""
    return {"step": step + 1, "global_batch": run.global_batch, "weight_norm": done.weight_norm,
            "divergence": run.guard.state_dict()}


def finish_run(run: Run, tokenizer, save_final) -> None:
    """Save the final model (sharded weights gathered first, every rank taking part) and drop the checkpoints."""
    acc, model = run.acc, run.model
    acc.wait_for_everyone()
    unwrapped = acc.unwrap_model(model)
    # Sharded weights (FSDP, ZeRO-3) are gathered into one state dict; every rank takes part in the gather.
    full_state = (None if run.replicated else full_state_dict(model, acc.is_main_process) if run.fsdp is not None
                  else acc.get_state_dict(model))
    if acc.is_main_process:
        if save_final is None:
            save_model(unwrapped, tokenizer, run.out, state_dict=full_state)
        elif full_state is None:
            save_final(unwrapped, run.out)
        else:
            save_final(unwrapped, run.out, state_dict=full_state)
        if run.ckpt_dir.exists():
            shutil.rmtree(run.ckpt_dir)
    acc.wait_for_everyone()
    if run.settings.report_to:
        finish_trackers(acc)


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
