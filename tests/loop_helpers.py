"""A tiny SFT run on the training loop, for tests of resume, divergence and checkpoint safety."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from podium.data.chat import tokenize_sft
from podium.data.collate import pad_batch
from podium.models.tiny import build_tiny_model
from podium.training.loop import train_loop
from podium.training.settings import TrainSettings
from podium.training.sft import sft_objective

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


def sft_examples(tok, n=16):
    return [tokenize_sft({"prompt": [{"role": "user", "content": f"What is {i} + {i + 1}?"}],
                          "completion": [{"role": "assistant", "content": f"{i} + {i + 1} = {2 * i + 1}"}]}, tok)
            for i in range(n)]


def tiny_run(out: Path, objective=sft_objective, with_summary: bool = False, log=None, **kw):
    """Train the tiny model a few steps into `out` (a stage folder); returns the trained model."""
    model, tok = build_tiny_model(seed=0, **TINY)
    s = TrainSettings(**{"learning_rate": 1e-2, "max_steps": 4, "batch_size": 4, "seed": 0, **kw})
    summary = train_loop(model, objective, sft_examples(tok), partial(pad_batch, pad_id=tok.pad_token_id), s, out,
                         tokenizer=tok, show_progress=False, log=log)
    return (model, summary) if with_summary else model


def crash_after(n_calls: int):
    """An SFT objective that raises on its `n_calls`-th call (a crash mid-run, after a checkpoint)."""
    calls = {"n": 0}

    def objective(model, batch):
        calls["n"] += 1
        if calls["n"] == n_calls:
            raise KeyboardInterrupt
        return sft_objective(model, batch)

    return objective
