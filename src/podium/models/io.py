"""Loading and saving models and tokenizers: one path for Hub ids and local folders.

Safety defaults: `trust_remote_code` is off and weights load from safetensors only;
a folder that holds only pickle checkpoints (`*.bin`, `*.pt`) is refused unless the
caller passes `allow_pickle=True` (a recipe's `allow_pickle: true`).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from podium.errors import PodiumError

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


def check_model_folder(path: str | os.PathLike) -> None:
    """A local model folder has a config and whole safetensors files; else a PodiumError naming the file.

    transformers reports these as ValueError ("Unrecognized model") or a safetensors header error.
    """
    folder = Path(path)
    if not folder.is_dir():
        return
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise PodiumError(f"{folder}: no config.json, so this is not a model folder (a model saved with "
                          "save_pretrained has config.json next to its *.safetensors)")
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except (OSError, SafetensorError) as e:
            raise PodiumError(f"{f}: damaged or truncated safetensors file ({first_line(e)}); "
                              "copy or download it again") from None


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise PodiumError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[dtype]


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
    check_model_folder(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_path),
            dtype=resolve_dtype(dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
        )
    # What transformers raises for a folder it cannot use (missing or invalid files, unknown model
    # type, custom code refused): the user's input, so one line instead of a traceback.
    except (OSError, ValueError, SafetensorError) as e:
        raise PodiumError(f"could not load model {str(name_or_path)!r}: {first_line(e)}") from None
    if device is not None:
        model.to(device)
    return model


def load_tokenizer(name_or_path: str | os.PathLike, *, trust_remote_code: bool | None = None):
    trust_remote_code = POLICY["trust_remote_code"] if trust_remote_code is None else trust_remote_code
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise PodiumError(f"could not load tokenizer {str(name_or_path)!r}: {first_line(e)}") from None
    if tok.pad_token is None:
        # Llama-style tokenizers ship without a pad token; padding is always masked out.
        tok.pad_token = tok.eos_token
    return tok


def save_model(model, tokenizer, out_dir: str | os.PathLike, max_shard_size: str = "2GB") -> Path:
    """Save model (safetensors) and tokenizer atomically: write to a temp folder, then rename."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp-save")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    # Old weight shards go (an old sharded model must not leave extra files); other artifacts stay.
    return publish_folder(tmp, out, stale_globs=("model*.safetensors*",))


def publish_folder(tmp: str | os.PathLike, out: str | os.PathLike, stale_globs: tuple[str, ...] = ()) -> Path:
    """Move the finished folder `tmp` into place at `out`.

    When `out` does not exist, `tmp` is renamed to it. Otherwise the files in `out` matching
    `stale_globs` are deleted, then each entry of `tmp` replaces its namesake in `out` (so a stage
    folder's other artifacts survive), and the emptied `tmp` is removed.
    """
    tmp, out = Path(tmp), Path(out)
    if not out.exists():
        os.replace(tmp, out)
        return out
    for pattern in stale_globs:
        for old in out.glob(pattern):
            old.unlink()
    for f in tmp.iterdir():
        dest = out / f.name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(f, dest)
    tmp.rmdir()
    return out


def check_vocab(model, tokenizer, name: str | None = None) -> None:
    """Token ids must index the embedding: a tokenizer larger than it is an error before the model runs
    (a larger embedding is fine: vocabularies are often padded)."""
    if tokenizer is None:
        return
    where = f"{name}: " if name else ""
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if get is not None else None
    except (NotImplementedError, AttributeError):
        emb = None
    rows = getattr(emb, "num_embeddings", None)
    if rows is not None and len(tokenizer) > rows:
        raise PodiumError(f"{where}the tokenizer has {len(tokenizer)} tokens but the model's embedding has only {rows} "
                          "rows: token ids past it cannot be embedded; use the tokenizer saved with this model "
                          "(or resize the model's embeddings)")


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def read_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
