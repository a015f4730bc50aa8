"""Which attention implementation a model load asks transformers for (`choose_attn_implementation`), and the
`attn_implementation:` setting of every stage that loads a model."""

from __future__ import annotations

import logging
import os
from typing import Annotated, Literal, get_args

import torch
import transformers
from pydantic import Field
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING
from transformers.utils import is_flash_attn_2_available

from podium.errors import PodiumError

AttnName = Literal["eager", "sdpa", "flash_attention_2", "flex_attention"]
ATTN_IMPLEMENTATIONS = get_args(AttnName)
# The `attn_implementation:` setting of every stage that loads a model (unset: chosen per model).
AttnImplementation = Annotated[
    AttnName | None, Field(description="unset: chosen per model (podium.models.attention_choice.choose_attn_implementation)")
]

log = logging.getLogger("podium")


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
