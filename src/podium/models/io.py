"""Loading and saving models and tokenizers: one path for Hub ids and local folders.

Safety defaults: `trust_remote_code` is off and weights load from safetensors only;
a folder that holds only pickle checkpoints (`*.bin`, `*.pt`) is refused unless the
caller passes `allow_pickle=True` (a recipe's `allow_pickle: true`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from podium.distributed.fsdp import rank_local_wanted
from podium.distributed.fsdp_load import empty_model
from podium.errors import PodiumError, first_line
from podium.hub import before_hub_lookup
from podium.models.attention_choice import choose_attn_implementation
from podium.models.dtypes import resolve_dtype
from podium.models.folder_checks import (
    FOLDER_ERRORS,
    check_finite,
    check_model_folder,
    check_weights_format,
    loading_problem,
    nonfinite_tensor,
    shape_problem,
)
from podium.models.policy import current_policy
from podium.models.publish import MODEL_FILES, staging
from podium.models.publish import publish_folder as publish_folder  # re-exported for callers of io

log = logging.getLogger("podium")

def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = "float32",
    trust_remote_code: bool | None = None,
    allow_pickle: bool | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    rank_local: bool = False,
):
    """Load a causal LM from a Hub id or a local folder (safetensors only by default).

    `attn_implementation` None picks one for the architecture (`choose_attn_implementation`).
    `rank_local`: the caller shards the model with podium's FSDP2 next; under such a launch the model comes back
    on the meta device and each rank reads only its own shards once sharded (podium.distributed.fsdp_load).
    """
    policy = current_policy()  # set per recipe (`trust_remote_code:` / `allow_pickle:` at its top level)
    trust_remote_code = policy.trust_remote_code if trust_remote_code is None else trust_remote_code
    allow_pickle = policy.allow_pickle if allow_pickle is None else allow_pickle
    before_hub_lookup(str(name_or_path), "model")
    check_weights_format(name_or_path, allow_pickle)
    check_model_folder(name_or_path)
    attn = choose_attn_implementation(name_or_path, attn_implementation, device=device)
    if rank_local and rank_local_wanted() and (folder := _weights_folder(name_or_path)) is not None:
        return empty_model(folder, dtype=resolve_dtype(dtype), attn=attn, trust_remote_code=trust_remote_code)
    where = f"model {str(name_or_path)!r}"
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(name_or_path),
            dtype=resolve_dtype(dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            output_loading_info=True,
            **attn,
        )
    # What transformers raises for a folder it cannot use (missing or invalid files, unknown model
    # type, custom code refused, a config field of the wrong type): the user's input, so one line instead
    # of a traceback.
    except FOLDER_ERRORS as e:
        raise PodiumError(f"could not load {where}: {type(e).__name__}: {first_line(e)}") from None
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as e:  # tensors whose shapes contradict config.json (transformers: "size mismatch")
        detail = shape_problem(Path(name_or_path)) if Path(name_or_path).is_dir() else None
        raise PodiumError(f"could not load {where}: {detail or first_line(e)}") from None
    if problem := loading_problem(info, where):
        raise PodiumError(problem)
    check_finite(model, where)
    if device is not None:
        model.to(device)
    return model


def _weights_folder(name_or_path: str | os.PathLike) -> Path | None:
    """The local folder of a whole model in safetensors (a Hub id: its snapshot, fetched as from_pretrained would);
    None for what only a full load reads (a LoRA adapter folder, pickle weights), logged."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        try:
            folder = Path(snapshot_download(str(name_or_path), allow_patterns=["*.json", "*.safetensors"]))
        except Exception as e:  # noqa: BLE001 - the full load reports what is wrong with the id
            log.info("%s: loading the whole model on this rank (no local snapshot: %s)", name_or_path, first_line(e))
            return None
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    log.info("%s: loading the whole model on this rank (rank-local loading reads a config.json and safetensors "
             "weights)", name_or_path)
    return None


def load_tokenizer(name_or_path: str | os.PathLike, *, trust_remote_code: bool | None = None):
    trust_remote_code = current_policy().trust_remote_code if trust_remote_code is None else trust_remote_code
    before_hub_lookup(str(name_or_path), "tokenizer")
    # A folder whose tokenizer_config.json names the generic backend (podium's own tokenizers do) is
    # loaded as its tokenizer.json says: transformers 5 otherwise swaps in the model type's own class
    # for some architectures (Qwen2), whose pipeline differs from the file's.
    generic = _declared_tokenizer_class(name_or_path) in ("TokenizersBackend", "PreTrainedTokenizerFast")
    try:
        if generic and (Path(name_or_path) / "tokenizer.json").is_file():
            tok = PreTrainedTokenizerFast.from_pretrained(str(name_or_path))
        else:
            tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except MemoryError:
        raise
    # The tokenizers library reports a damaged tokenizer.json with its own exception types (and transformers
    # with KeyError or TypeError on a wrong layout): all of them are about the folder's files.
    except Exception as e:  # noqa: BLE001
        raise PodiumError(f"could not load tokenizer {str(name_or_path)!r}: {type(e).__name__}: {first_line(e)}") from None
    if tok.pad_token is None:
        # Llama-style tokenizers ship without a pad token; padding is always masked out.
        tok.pad_token = tok.eos_token
    return tok


def _declared_tokenizer_class(name_or_path) -> str | None:
    path = Path(name_or_path) / "tokenizer_config.json"
    try:
        return json.loads(path.read_text()).get("tokenizer_class") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def save_model(model, tokenizer, out_dir: str | os.PathLike, max_shard_size: str = "2GB",
               state_dict: dict | None = None) -> Path:
    """Save model (safetensors) and tokenizer atomically (`publish.staging`).

    `state_dict`: the weights to write instead of the model's own (a sharded model's gathered weights).

    The old model's files (weights, config, tokenizer) are replaced as a set; other files in
    `out_dir` (a stage folder's stage.json, metrics.jsonl, ...) stay.
    """
    extra = {"state_dict": state_dict} if state_dict is not None else {}
    weights = state_dict.items() if state_dict is not None else model.state_dict().items()
    if (name := nonfinite_tensor(weights)) is not None:  # a trained model that diverged: not published
        raise PodiumError(f"{out_dir}: not saved: weight {name} holds NaN or infinite values (the training diverged)")
    with staging(out_dir, stale_globs=MODEL_FILES) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size, **extra)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)


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
    try:  # ids need not be dense: the largest one must fit too
        top = max(tokenizer.get_vocab().values(), default=-1) + 1
    except (AttributeError, TypeError, ValueError):
        top = 0
    size = max(len(tokenizer), top)
    if rows is not None and size > rows:
        ids = f" (ids up to {top - 1})" if top > len(tokenizer) else ""
        raise PodiumError(f"{where}the tokenizer has {len(tokenizer)} tokens{ids} but the model's embedding has only "
                          f"{rows} rows: token ids past it cannot be embedded; use the tokenizer saved with this model "
                          "(or resize the model's embeddings)")


def max_positions(model_or_config) -> int | None:
    """The number of positions the model can attend over (`max_position_embeddings`), None when it names none."""
    cfg = getattr(model_or_config, "config", model_or_config)
    if hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = cfg.get(attr) if isinstance(cfg, dict) else getattr(cfg, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def generation_budget(model, max_new_tokens: int, prompt_tokens: int, where: str = "generation") -> int:
    """How many tokens may be generated after a prompt of `prompt_tokens`: `max_new_tokens`, cut at the model's
    positions (a model does not generate past them). A setting that can never fit, or a prompt that fills every
    position, is a PodiumError naming the numbers."""
    limit = max_positions(model)
    if limit is None:
        return max_new_tokens
    if max_new_tokens >= limit:
        raise PodiumError(f"{where}: max_new_tokens={max_new_tokens:,} does not fit the model's {limit:,} positions "
                          "(max_position_embeddings); lower max_new_tokens")
    if prompt_tokens >= limit:
        raise PodiumError(f"{where}: a prompt of {prompt_tokens:,} tokens fills the model's {limit:,} positions "
                          "(max_position_embeddings); shorten the prompts")
    budget = min(max_new_tokens, limit - prompt_tokens)
    if budget < max_new_tokens:
        log.warning(f"{where}: prompts of {prompt_tokens:,} tokens leave {budget} of max_new_tokens={max_new_tokens} "
                    f"within the model's {limit:,} positions; those completions stop there")
    return budget


def read_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
