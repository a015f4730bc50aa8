"""Loading and saving models and tokenizers: one path for Hub ids and local folders.

Safety defaults: `trust_remote_code` is off and weights load from safetensors only;
a folder that holds only pickle checkpoints (`*.bin`, `*.pt`) is refused unless the
caller passes `allow_pickle=True` (a recipe's `allow_pickle: true`).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, get_args

import torch
import transformers
from huggingface_hub import errors as hf_errors
from huggingface_hub import snapshot_download
from pydantic import Field
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING
from transformers.utils import is_flash_attn_2_available

from podium.errors import PodiumError
from podium.hub import before_hub_lookup
from podium.limits import read_json_bounded, regular_file_problem
from podium.models.dtypes import resolve_dtype
from podium.models.publish import MODEL_FILES, staging
from podium.models.publish import publish_folder as publish_folder  # re-exported for callers of io
from podium.training.fsdp import rank_local_wanted
from podium.training.fsdp_load import empty_model

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
AttnName = Literal["eager", "sdpa", "flash_attention_2", "flex_attention"]
ATTN_IMPLEMENTATIONS = get_args(AttnName)
# The `attn_implementation:` setting of every stage that loads a model (unset: chosen per model).
AttnImplementation = Annotated[
    AttnName | None, Field(description="unset: chosen per model (podium.models.io.choose_attn_implementation)")
]

log = logging.getLogger("podium")

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
    on the meta device and each rank reads only its own shards once sharded (podium.training.fsdp_load).
    """
    trust_remote_code = POLICY["trust_remote_code"] if trust_remote_code is None else trust_remote_code
    allow_pickle = POLICY["allow_pickle"] if allow_pickle is None else allow_pickle
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


def choose_attn_implementation(name_or_path: str | os.PathLike, requested: str | None = None, *,
                                device: str | torch.device | None = None, base: bool = False) -> dict:
    """`from_pretrained` keyword arguments that set the attention implementation of a model load.

    With `requested` None (or "auto"): flash_attention_2 when the model will run on CUDA, the
    `flash_attn` package is installed and the architecture supports it; else sdpa where the
    architecture supports it; else eager (Gemma-2: sdpa cannot soft-cap attention logits). A
    requested implementation the architecture (or this machine) cannot run is a PodiumError naming
    both. `base` looks up the bare backbone class (`AutoModel`, reward/GPM heads) instead of the
    causal LM. The choice is logged once per load. Returns `{}` when the architecture is not one
    transformers knows without remote code (transformers then decides), else
    `{"attn_implementation": name}`.
    """
    cls, arch = _model_class(name_or_path, base)
    requested = None if requested in (None, "auto") else requested
    if cls is None:
        if requested is not None:
            log.info("%s: attention %s (requested)", name_or_path, requested)
            return {"attn_implementation": requested}
        return {}
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    supports = {"eager": True, "sdpa": getattr(cls, "_supports_sdpa", False),
                "flash_attention_2": getattr(cls, "_supports_flash_attn", False),
                "flex_attention": getattr(cls, "_supports_flex_attn", False)}
    if requested is not None:
        if requested not in ATTN_IMPLEMENTATIONS:
            raise PodiumError(f"attn_implementation {requested!r} is unknown; use one of "
                              f"{', '.join(ATTN_IMPLEMENTATIONS)} or leave it unset")
        if not supports[requested]:
            ok = ", ".join(k for k, v in supports.items() if v)
            raise PodiumError(f"{name_or_path}: {arch} does not support attn_implementation {requested!r} in "
                              f"transformers {transformers.__version__} (it supports {ok}); "
                              "set another or leave attn_implementation unset")
        if requested == "flash_attention_2" and not (on_cuda and _flash_attn_installed()):
            raise PodiumError(f"{name_or_path}: attn_implementation 'flash_attention_2' needs a CUDA device and the "
                              "flash-attn package; leave attn_implementation unset to use sdpa or eager")
        choice, why = requested, "requested"
    elif on_cuda and supports["flash_attention_2"] and _flash_attn_installed():
        choice, why = "flash_attention_2", "CUDA with flash-attn installed"
    elif supports["sdpa"]:
        choice, why = "sdpa", "supported by the architecture"
    else:
        choice, why = "eager", f"{arch} does not support sdpa"
    log.info("%s: %s, attention %s (%s)", name_or_path, arch, choice, why)
    return {"attn_implementation": choice}


def _model_class(name_or_path, base: bool):
    """(transformers class, architecture name) for a model folder or Hub id; (None, name) if unknown."""
    try:  # never runs remote code: a custom architecture stays unknown here
        config = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=False)
    except Exception:  # noqa: BLE001 - the load itself reports a broken or missing config
        return None, str(name_or_path)
    mapping = MODEL_MAPPING if base else MODEL_FOR_CAUSAL_LM_MAPPING
    cls = mapping.get(type(config), None)
    archs = getattr(config, "architectures", None) or []
    return cls, (cls.__name__ if cls is not None else (archs[0] if archs else type(config).__name__))


def _flash_attn_installed() -> bool:
    return bool(is_flash_attn_2_available())


def load_tokenizer(name_or_path: str | os.PathLike, *, trust_remote_code: bool | None = None):
    trust_remote_code = POLICY["trust_remote_code"] if trust_remote_code is None else trust_remote_code
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


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def read_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
