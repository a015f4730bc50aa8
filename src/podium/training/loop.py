"""The one training loop: accelerate, exact gradient accumulation, checkpoints, resume.

An objective turns a batch into `(loss_sum, per-example metrics)`; this loop owns
everything else. Losses are summed per unit (token or example) and divided by the
global count of the optimizer step, so `batch_size x gradient_accumulation_steps x
processes` with the same product gives the same update.

Data order is a function of (seed, step): epoch e uses the permutation seeded by
`seed + e`, and step s takes the s-th global batch of it. A resumed run therefore
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

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

from podium.data.records import write_text
from podium.errors import PodiumError
from podium.training.settings import TrainSettings

Objective = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def get_accelerator():
    from accelerate import Accelerator

    return Accelerator()


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


def latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = []
    for p in ckpt_dir.glob("step-*"):
        if p.is_dir() and (p / "trainer_state.json").exists() and p.name[5:].isdigit():
            found.append((int(p.name[5:]), p))
    return max(found) if found else None


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
    the model via `save_final(model, out_dir)` (default: safetensors + tokenizer).
    """
    from podium.models.io import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    s = settings
    acc = get_accelerator()
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
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, s)
    scheduler = make_scheduler(optimizer, s, total_steps)
    model, optimizer = acc.prepare(model, optimizer)
    # Not prepared: accelerate would step it once per process.
    acc.register_for_checkpointing(scheduler)

    start_step = 0
    found = latest_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    metrics_path = out / "metrics.jsonl"
    if found:
        start_step, path = found
        acc.load_state(str(path))
        if log and acc.is_main_process:
            log.info(f"resuming from {path} (step {start_step} of {total_steps})")
    if acc.is_main_process:
        keep_metrics_until(metrics_path, start_step)

    model.train()
    progress = None
    if show_progress and acc.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=start_step, desc=f"train {out.name}", unit="step", dynamic_ncols=True)

    last = {}
    steps_done = total_steps
    t_run = time.perf_counter()
    for step in range(start_step, total_steps):
        t0 = time.perf_counter()
        idx = step_indices(n, step, global_batch, steps_per_epoch, s.seed, s.shuffle)
        mine = idx[rank * per_rank : (rank + 1) * per_rank]
        batches = [collate([examples[i] for i in mine[j : j + s.batch_size]]) for j in range(0, per_rank, s.batch_size)]
        count = torch.tensor(float(sum(b["count"] for b in batches)), device=acc.device)
        global_count = acc.reduce(count, reduction="sum") if world > 1 else count
        loss_total = torch.zeros((), device=acc.device)
        sums: dict[str, torch.Tensor] = {}
        n_items = torch.zeros((), device=acc.device)
        n_tokens = 0
        for j, batch in enumerate(batches):
            batch = {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            sync = j == len(batches) - 1
            ctx = acc.no_sync(model) if not sync and world > 1 else nullcontext()
            with ctx:
                loss_sum, metrics = objective(model, batch)
                # DDP averages gradients over processes; scale back to a global sum / count.
                acc.backward(loss_sum * world / global_count)
            loss_total += loss_sum.detach()
            for k, v in metrics.items():
                v = v.detach().float()
                sums[k] = sums.get(k, 0) + v.sum()
            n_items += metrics_len(metrics, batch)
            n_tokens += int(batch.get("num_tokens", 0))
        if world > 1:
            loss_total = acc.reduce(loss_total, reduction="sum")
            n_items = acc.reduce(n_items, reduction="sum")
            sums = {k: acc.reduce(v, reduction="sum") for k, v in sums.items()}
            n_tokens = int(acc.reduce(torch.tensor(float(n_tokens), device=acc.device), reduction="sum"))
        loss_value = (loss_total / global_count).item()
        if not math.isfinite(loss_value):
            good = latest_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
            kept = f"; last good checkpoint: {good[1]}" if good else "; no checkpoint was saved yet"
            raise PodiumError(f"non-finite loss ({loss_value}) at step {step + 1}{kept}")
        grad_norm = acc.clip_grad_norm_(params, s.max_grad_norm or float("inf"))
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        if not math.isfinite(grad_norm):
            raise PodiumError(f"non-finite gradient norm at step {step + 1}; the step was not applied")
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0

        record = {"step": step + 1, "epoch": round((step + 1) / steps_per_epoch, 4), "loss": loss_value}
        denom = max(float(n_items), 1.0)
        record.update({k: (v / denom).item() for k, v in sums.items()})
        record.update({"grad_norm": grad_norm, "lr": lr, f"{example_unit}_per_second": global_batch / dt})
        if n_tokens:
            record["tokens_per_second"] = n_tokens / dt
        stop = False
        if evaluate is not None and evaluate_every and ((step + 1) % evaluate_every == 0 or step + 1 == total_steps):
            record.update({f"eval/{k}": v for k, v in evaluate(acc.unwrap_model(model)).items()})
            model.train()
            stop = stop_when is not None and step + 1 < total_steps and bool(stop_when(record))
        last = record
        if acc.is_main_process and ((step + 1) % s.logging_steps == 0 or step + 1 == total_steps or stop):
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        if stop:
            steps_done = step + 1
            if log and acc.is_main_process:
                log.info(f"stopping after step {steps_done} of {total_steps}: the stop condition holds")
            break
        if s.save_steps and (step + 1) % s.save_steps == 0 and step + 1 < total_steps:
            save_checkpoint(acc, ckpt_dir, step + 1, s.save_total_limit)

    if progress is not None:
        progress.close()
    acc.wait_for_everyone()
    unwrapped = acc.unwrap_model(model)
    if acc.is_main_process:
        (save_final or (lambda m, d: save_model(m, tokenizer, d)))(unwrapped, out)
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
    acc.wait_for_everyone()
    summary = {k: v for k, v in last.items() if k not in ("step", "epoch")}
    summary.update({"steps": steps_done, "train_seconds": time.perf_counter() - t_run})
    return summary


def metrics_len(metrics: dict, batch: dict) -> int:
    for v in metrics.values():
        return int(v.numel())
    return int(batch.get("num_examples", 0))


def save_checkpoint(acc, ckpt_dir: Path, step: int, keep: int) -> None:
    """Save the full training state; the folder appears under its final name only when complete."""
    final = ckpt_dir / f"step-{step}"
    tmp = ckpt_dir / f".tmp-step-{step}"
    if acc.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=True)
    acc.wait_for_everyone()
    if acc.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
        os.replace(tmp, final)
        done = sorted((int(p.name[5:]), p) for p in ckpt_dir.glob("step-*") if p.name[5:].isdigit())
        for _, p in done[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop logged steps after `step` (they will be logged again by the resumed run)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in keep))

