"""A minimal training loop for preference-model experiments (toy benchmarks and tests).

Stand-in until `podium.training.loop.train_loop` exists: same objective/collate contract
(loss_sum divided by `batch["count"]`), AdamW, fixed number of steps, sampling with a seeded
generator. No accumulation, checkpoints or accelerate — use the shared loop for real runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def fit(
    model,
    objective: Callable,
    examples: Sequence[dict],
    collate: Callable,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    eval_every: int = 0,
    evaluate: Callable[[], float] | None = None,
) -> list[dict]:
    """Train for `steps` optimizer steps; returns history rows {step, loss[, eval]}."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    history = []
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(examples), (batch_size,), generator=gen).tolist()
        batch = collate([examples[i] for i in idx])
        loss_sum, _ = objective(model, batch)
        loss = loss_sum / batch["count"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"step": step, "loss": float(loss.detach())}
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
            row["eval"] = evaluate()
            model.train()
        history.append(row)
    model.eval()
    return history
