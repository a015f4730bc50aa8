"""Loading and saving models and tokenizers: one path for Hub ids and local folders.

Safety defaults: `trust_remote_code` is off and weights load from safetensors only;
a folder that holds only pickle checkpoints (`*.bin`, `*.pt`) is refused unless the
caller passes `allow_pickle=True` (a recipe's `allow_pickle: true`).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from podium.errors import PodiumError
from podium.models.dtypes import resolve_dtype
from podium.models.publish import MODEL_FILES, staging
from podium.models.publish import publish_folder as publish_folder  # re-exported for callers of io

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# Set per recipe by the pipeline (`trust_remote_code:` / `allow_pickle:` at the recipe's top level).
POLICY = {"trust_remote_code": False, "allow_pickle": False}


@contextmanager
def security_policy(trust_remote_code: bool = False, allow_pickle: bool = False):
    old = dict(POLICY)
    POLICY.update(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    try:
        yield
    finally:
        POLICY.update(old)


def is_local(name_or_path: str | os.PathLike) -> bool:
    return Path(name_or_path).exists()


def check_weights_format(path: str | os.PathLike, allow_pickle: bool = False) -> None:
    """Refuse a local model folder whose weights are not safetensors."""
    folder = Path(path)
    if not folder.is_dir():
        return
    files = [p.name for p in folder.iterdir()]
    if any(f.endswith(".safetensors") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        raise PodiumError(
            f"{folder}: weights are pickle files ({', '.join(sorted(pickles))}), which can run code when "
            "loaded; convert them to safetensors or set `allow_pickle: true` if you trust this folder"
        )
    if not pickles and not (folder / "adapter_config.json").exists():
        raise PodiumError(f"{folder}: no model weights found (expected *.safetensors)")


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = "float32",
    trust_remote_code: bool | None = None,
    allow_pickle: bool | None = None,
    device: str | torch.device | None = None,
):
    """Load a causal LM from a Hub id or a local folder (safetensors only by default)."""
    trust_remote_code = POLICY["trust_remote_code"] if trust_remote_code is None else trust_remote_code
    allow_pickle = POLICY["allow_pickle"] if allow_pickle is None else allow_pickle
    check_weights_format(name_or_path, allow_pickle)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_path),
            dtype=resolve_dtype(dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
        )
    except OSError as e:
        raise PodiumError(f"could not load model {str(name_or_path)!r}: {first_line(e)}") from None
    if device is not None:
        model.to(device)
    return model


def load_tokenizer(name_or_path: str | os.PathLike, *, trust_remote_code: bool | None = None):
    trust_remote_code = POLICY["trust_remote_code"] if trust_remote_code is None else trust_remote_code
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except OSError as e:
        raise PodiumError(f"could not load tokenizer {str(name_or_path)!r}: {first_line(e)}") from None
    if tok.pad_token is None:
        # Llama-style tokenizers ship without a pad token; padding is always masked out.
        tok.pad_token = tok.eos_token
    return tok


def save_model(model, tokenizer, out_dir: str | os.PathLike, max_shard_size: str = "2GB") -> Path:
    """Save model (safetensors) and tokenizer atomically (`publish.staging`).

    The old model's files (weights, config, tokenizer) are replaced as a set; other files in
    `out_dir` (a stage folder's stage.json, metrics.jsonl, ...) stay.
    """
    with staging(out_dir, stale_globs=MODEL_FILES) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def read_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
