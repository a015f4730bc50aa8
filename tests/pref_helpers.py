"""Shared test helpers for the preference trainer: tiny models and pair files."""

from __future__ import annotations

import json
from pathlib import Path

from podium.models.io import save_model
from podium.models.tiny import build_tiny_model

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


PAIRS = [
    {"prompt": "What is 2+3?", "chosen": "5", "rejected": "six"},
    {"prompt": "Name a colour:", "chosen": "red", "rejected": "the blue sky"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"},
    {"prompt": "7*6=", "chosen": "42", "rejected": "48"},
    {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello!"}],
     "rejected": [{"role": "assistant", "content": "go away"}]},
]


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def save_tiny(path: Path, seed: int = 0, **kw) -> Path:
    model, tok = build_tiny_model(seed=seed, **{**TINY, **kw})
    save_model(model, tok, path)
    return path
