"""What podium refuses to load from a model folder, before transformers sees it or right after: pickle weights
(unless allowed), a folder without config.json, a config whose counts contradict each other, truncated
safetensors, weights transformers would initialise at random, and NaN or infinite weights. Each refusal is a
PodiumError naming the file, tensor or field."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from huggingface_hub import errors as hf_errors
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForCausalLM

from podium.errors import PodiumError, first_line
from podium.limits import read_json_bounded, regular_file_problem

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


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
    """A local model folder has a sound config and whole safetensors files; else a PodiumError naming the file.

    transformers reports these as ValueError ("Unrecognized model"), a safetensors header error, or not at
    all (a config whose head counts contradict each other fails at the first forward).
    """
    folder = Path(path)
    if not folder.is_dir():
        return
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise PodiumError(f"{folder}: no config.json, so this is not a model folder (a model saved with "
                          "save_pretrained has config.json next to its *.safetensors)")
    if (folder / "config.json").is_file():
        config = read_json_bounded(folder / "config.json", what="config.json")
        if problem := config_problem(config):
            raise PodiumError(f"{folder / 'config.json'}: {problem}")
    for f in sorted(folder.glob("*.safetensors")):
        if problem := regular_file_problem(f):
            raise PodiumError(f"{f}: {problem}")
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except (OSError, SafetensorError) as e:
            raise PodiumError(f"{f}: damaged or truncated safetensors file ({first_line(e)}); "
                              "copy or download it again") from None


# config.json fields that count something: positive integers when present.
COUNT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "max_position_embeddings", "head_dim")


def config_problem(config) -> str | None:
    """What is wrong with a model's config.json that transformers would only find at the first forward (or never):
    a count that is not a positive integer, more key/value heads than attention heads, heads that do not
    divide each other or the hidden size."""
    if not isinstance(config, dict):
        return "not a JSON object"
    text = config.get("text_config", config)
    text = text if isinstance(text, dict) else config
    for name in COUNT_FIELDS:
        value = text.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"`{name}` must be a positive integer, got {value!r}"
    heads, kv = text.get("num_attention_heads"), text.get("num_key_value_heads")
    if heads and kv and (kv > heads or heads % kv):
        return (f"`num_key_value_heads` = {kv} must divide `num_attention_heads` = {heads} (each key/value head "
                "serves a group of attention heads)")
    hidden = text.get("hidden_size")
    if heads and hidden and text.get("head_dim") is None and hidden % heads:
        return f"`hidden_size` = {hidden} is not a multiple of `num_attention_heads` = {heads} (and no `head_dim`)"
    return None


def loading_problem(info: dict, where: str) -> str | None:
    """Weights transformers would initialise at random instead of loading: missing from the checkpoint, or
    present with another shape. Named; a model never runs with a random head unnoticed."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or [])
    if not missing and not mismatched:
        return None
    parts = [f"{len(missing)} missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"] if missing else []
    if mismatched:
        parts.append(f"{len(mismatched)} of another shape than config.json says ({', '.join(mismatched[:5])})")
    return (f"{where}: weights " + " and ".join(parts) + "; transformers would initialise them at random: use a "
            "complete checkpoint")


def nonfinite_tensor(named_tensors) -> str | None:
    """The name of the first tensor holding NaN or inf, or None."""
    for name, t in named_tensors:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def check_finite(model, where: str) -> None:
    """Refuse a model whose weights hold NaN or inf (it would load, run and score garbage), naming the tensor."""
    if (name := nonfinite_tensor(model.named_parameters())) is not None:
        raise PodiumError(f"{where}: weight {name} holds NaN or infinite values")


def shape_problem(folder: Path) -> str | None:
    """The first stored tensor whose shape contradicts what config.json describes (for a clear message)."""
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not iterable
                shape = tuple(st.get_slice(name).get_shape())
                if name in expected and expected[name] != shape:
                    return f"{f.name}: tensor {name} has shape {list(shape)}, config.json gives {list(expected[name])}"
    return None


# What loading a folder raises when one of its files is wrong (besides RuntimeError for shapes, handled apart):
# huggingface_hub's strict config dataclasses raise their own type for a field of the wrong type.
FOLDER_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, SafetensorError,
                 getattr(hf_errors, "StrictDataclassError", ValueError))
