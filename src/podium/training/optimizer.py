"""The optimizer, the learning-rate schedule and the data order of a training run."""

from __future__ import annotations

import math
import random

import torch

from podium.training.settings import TrainSettings


def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    if s.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.learning_rate, weight_decay=s.weight_decay)


def make_scheduler(optimizer, s: TrainSettings, total_steps: int):
    """Linear warmup over `warmup_ratio` of the steps, then constant, linear decay or cosine decay to 0."""
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
    """Example indices of global batch `step` (deterministic in seed and step): epoch e uses the permutation
    seeded by `seed + e`, and step s takes the s-th global batch of it."""
    epoch, within = divmod(step, steps_per_epoch)
    order = list(range(n))
    if shuffle:
        random.Random(seed + epoch).shuffle(order)
    return order[within * global_batch : (within + 1) * global_batch]
