"""The one dtype table: names users write in configs, torch dtypes, and safetensors' dtype codes.

Every config field that takes a dtype (`dtype: bf16`, a merge's `out_dtype: bfloat16`) and
every safetensors reader or writer in podium looks names up here, so an alias accepted in one
place is accepted everywhere.
"""

from __future__ import annotations

import torch

from podium.errors import PodiumError

# Floating-point dtypes a config may name: canonical name and its short alias.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
DTYPE_NAMES = frozenset(DTYPES)

# safetensors header codes (https://github.com/huggingface/safetensors, "dtype" field).
SAFETENSORS_CODES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
FROM_SAFETENSORS: dict[str, torch.dtype] = {code: dtype for dtype, code in SAFETENSORS_CODES.items()}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A config's dtype name (`bf16`, `bfloat16`, ...) as a torch dtype; None and torch dtypes pass through."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise PodiumError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def canonical_name(dtype: str | torch.dtype) -> str:
    """`bf16` or torch.bfloat16 -> "bfloat16" (the spelling transformers writes in config.json)."""
    return str(resolve_dtype(dtype)).removeprefix("torch.")


def nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Bytes of a contiguous tensor of `shape` and `dtype`."""
    n = 1
    for d in shape:
        n *= d
    return n * dtype.itemsize
