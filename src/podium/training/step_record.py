"""What a training step and a whole run report: the numbers of one optimizer step (`StepDone`), the step's
metrics line (`step_record`), and the run's summary (`run_summary`). Part of `podium.training.loop`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from podium.training.loop_state import Run


@dataclass
class StepDone:
    """One optimizer step's numbers, summed over processes."""

    loss: float  # the loss of the global batch: sum over units / their global count
    sums: dict[str, torch.Tensor]  # per metric: its sum over the examples it covers
    counts: dict[str, torch.Tensor]  # per metric: how many examples it covers
    n_tokens: int
    flops: float
    grad_norm: float
    lr: float  # the learning rate the step was taken with
    weight_norm: float | None = None


@dataclass
class Throughput:
    """Model FLOPs and step seconds over the run's steps, for its MFU."""

    flops: float = 0.0
    seconds: float = 0.0


def step_record(run: Run, step: int, done: StepDone, dt: float, example_unit: str, totals: Throughput) -> dict:
    """The metrics line of a step: loss, the objective's metrics (means over the examples each covers), norms,
    learning rate, throughput and MFU (training/flops.py); the step's FLOPs and seconds join `totals`."""
    record = {"step": step + 1, "epoch": round((step + 1) / run.steps_per_epoch, 4), "loss": done.loss}
    record.update({k: (v / done.counts[k]).item() for k, v in done.sums.items() if done.counts[k] > 0})
    record.update({"grad_norm": done.grad_norm,
                   **({"weight_norm": done.weight_norm} if done.weight_norm is not None else {}), "lr": done.lr,
                   f"{example_unit}_per_second": run.global_batch / dt})
    if done.n_tokens:
        record["tokens_per_second"] = done.n_tokens / dt
    if done.flops:  # model FLOPs of the step over its time, and that over the hardware's peak
        record["flops_per_second"] = done.flops / dt
        record["mfu"] = done.flops / dt / (run.peak * run.world)
        totals.flops, totals.seconds = totals.flops + done.flops, totals.seconds + dt
    return record


def run_summary(run: Run, last: dict, steps_done: int, seconds: float, held: dict, totals: Throughput) -> dict:
    """The last step's metrics, the steps run, the time, the memory held per process, and MFU over the run."""
    summary = {k: v for k, v in last.items() if k not in ("step", "epoch")}
    summary.update({"steps": steps_done, "train_seconds": seconds, **held})
    if totals.seconds:  # over the run's steps, not the last one's
        summary.update({"flops_per_second": totals.flops / totals.seconds,
                        "mfu": totals.flops / totals.seconds / (run.peak * run.world),
                        "peak_flops_per_second": run.peak * run.world})
    return summary
