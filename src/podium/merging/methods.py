"""Merge methods as pure tensor functions, plus the table that tells the executor their parameters.

Every function takes the input tensors of one weight (all the same shape) and returns the merged
tensor. Semantics follow mergekit 0.1.5 so configs written for it give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from podium.merging.sparsify import magnitude, random_drop


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def linear(tensors: list[torch.Tensor], weights: list[float], normalize: bool = True) -> torch.Tensor:
    """Weighted average sum_i w_i x_i / sum_i w_i (Wortsman et al. 2022, "Model soups", arXiv:2203.05482).

    tensors: k tensors of one shape. Computed in float32, returned in the first input's dtype.
    """
    dtype = _work_dtype(tensors[0])
    # weights as a float32 tensor (not Python doubles) so low-precision outputs round like mergekit's
    w = torch.tensor(weights, dtype=dtype)
    out = torch.zeros_like(tensors[0], dtype=dtype)
    for x, wi in zip(tensors, w):
        out.addcmul_(x, wi)
    if normalize:
        out.div_(w.sum())
    return out.to(tensors[0].dtype)


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995,
          eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation from v0 (t=0, the base) to v1 (t=1) (Shoemake 1985).

    The angle comes from the normalised flattened tensors and the coefficients are applied to
    the raw ones, so norms interpolate too; when |cos θ| > dot_threshold it falls back to lerp.
    v0, v1: same shape. Returns v0's dtype.
    """
    dtype = _work_dtype(v0)
    a, b = v0.reshape(-1).to(dtype), v1.reshape(-1).to(dtype)
    if a.numel() == 0:
        return v0.clone()
    norm_a = torch.linalg.vector_norm(a)
    norm_b = torch.linalg.vector_norm(b)
    norm_a = norm_a if norm_a > eps else torch.ones_like(norm_a)
    norm_b = norm_b if norm_b > eps else torch.ones_like(norm_b)
    dot = ((a / norm_a) * (b / norm_b)).sum().clamp(-1, 1)
    t = torch.tensor(t, dtype=dtype)  # 1 - t in working precision, as mergekit computes it
    if dot.abs() > dot_threshold:
        coef_a, coef_b = 1 - t, t
    else:
        theta = torch.acos(dot)
        sin_theta = torch.sin(theta)
        coef_a = torch.sin((1 - t) * theta) / sin_theta
        coef_b = torch.sin(t * theta) / sin_theta
    return (coef_a * a + coef_b * b).reshape(v0.shape).to(v0.dtype)


def task_arithmetic(
    base: torch.Tensor,
    others: list[torch.Tensor],
    weights: list[float],
    densities: list[float] | None = None,
    sparsify: str | None = None,
    consensus: str | None = None,
    normalize: bool = False,
    rescale: bool = False,
    lam: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """base + λ · combine_i(w_i · sparsify(x_i − base)) (Ilharco et al. 2022, arXiv:2212.04089).

    TIES (arXiv:2306.01708) is sparsify="magnitude", consensus="sum": trim each task vector to
    its top-`density` magnitudes, elect a sign per entry by total signed mass, and average only
    the entries that agree (disjoint mean, weighted). DARE (arXiv:2311.03099) is
    sparsify="random" with rescale (dare_linear without consensus, dare_ties with it).
    base, others: tensors of one shape. Returns base's dtype.
    """
    if not others:
        return base
    densities = densities or [1.0] * len(others)
    deltas = base.new_empty((len(others), *base.shape))
    for i, (x, d) in enumerate(zip(others, densities)):
        delta = x - base
        if sparsify == "magnitude":
            delta = magnitude(delta, d, rescale=rescale)
        elif sparsify == "random":
            delta = random_drop(delta, d, rescale=rescale, generator=generator)
        deltas[i] = delta
    w = torch.tensor(weights, dtype=deltas.dtype).reshape(-1, *([1] * base.dim()))
    deltas.mul_(w)
    if consensus == "sum":
        sign = deltas.sign()
        elected = (deltas.sum(dim=0) >= 0).to(deltas.dtype) * 2 - 1
        agree = (sign == elected).to(deltas.dtype)
        mixed = (deltas * agree).sum(dim=0)
        divisor = (w * agree).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = deltas.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        mixed = mixed / divisor
    if lam != 1:
        mixed = mixed * lam
    return (base + mixed).to(base.dtype)


def model_stock(base: torch.Tensor, others: list[torch.Tensor], filter_wise: bool = False) -> torch.Tensor:
    """Model Stock (Jang et al. 2024, arXiv:2403.19522): t·mean(x_i) + (1−t)·base, t = kcosθ/(1+(k−1)cosθ).

    cos θ is the mean pairwise cosine between the task vectors x_i − base (per row with filter_wise).
    base, others: tensors of one shape, k = len(others) >= 2.
    """
    shape = base.shape
    if filter_wise:
        w0 = base.unsqueeze(0) if base.dim() == 1 else base
        ws = [x.unsqueeze(0) if x.dim() == 1 else x for x in others]
    else:
        w0, ws = base.reshape(-1), [x.reshape(-1) for x in others]
    offsets = [x - w0 for x in ws]
    cos = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norm = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cos.append(((a * b).sum(dim=-1) / norm.clamp(min=1e-6)).clamp(-1, 1))
    cos_theta = torch.stack(cos).mean(dim=0).unsqueeze(-1)
    k = len(ws)
    denom = 1 + (k - 1) * cos_theta
    singular = denom.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos_theta),
                    k * cos_theta / torch.where(singular, torch.ones_like(denom), denom))
    return (t * (sum(ws) / k) + (1 - t) * w0).reshape(shape)


def passthrough(tensor: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Copy one input unchanged (optionally scaled): the building block of depth up-scaling."""
    return tensor if scale is None else tensor * scale


# --- the table the executor reads -------------------------------------------------------------

SHARED, INPUT, NON_BASE = "shared", "input", "non_base"
REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """A method parameter: its scope (one value per tensor, per input, or per non-base input)."""

    scope: str
    default: object = REQUIRED
    kind: type = float


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable  # fn(tensors, base_index, shared, per_input, generator) -> Tensor
    params: dict[str, Param] = field(default_factory=dict)
    base_required: bool = False
    min_inputs: int = 1
    max_inputs: int | None = None
    random: bool = False


def _linear(tensors, base, shared, per_input, gen):
    return linear(tensors, [p["weight"] for p in per_input], shared["normalize"])


def _slerp(tensors, base, shared, per_input, gen):
    return slerp(shared["t"], tensors[base], tensors[1 - base])


def _passthrough(tensors, base, shared, per_input, gen):
    return passthrough(tensors[0], per_input[0].get("scale"))


def _model_stock(tensors, base, shared, per_input, gen):
    others = [x for i, x in enumerate(tensors) if i != base]
    return model_stock(tensors[base], others, shared["filter_wise"])


def _task_arithmetic_fn(sparsify: str | None, consensus: str | None):
    def run(tensors, base, shared, per_input, gen):
        idx = [i for i in range(len(tensors)) if i != base]
        return task_arithmetic(
            tensors[base], [tensors[i] for i in idx],
            weights=[per_input[i]["weight"] for i in idx],
            densities=[per_input[i]["density"] for i in idx],
            sparsify=sparsify, consensus=consensus, normalize=shared["normalize"],
            rescale=shared["rescale"], lam=shared["lambda"], generator=gen,
        )
    return run


def _task_arithmetic_spec(name, sparsify, consensus, normalize, rescale) -> MethodSpec:
    params = {
        "int8_mask": Param(SHARED, False, bool),
        "normalize": Param(SHARED, normalize, bool),
        "rescale": Param(SHARED, rescale, bool),
        "lambda": Param(SHARED, 1.0),
        "weight": Param(NON_BASE),
        "density": Param(NON_BASE, 1.0),
    }
    return MethodSpec(name, _task_arithmetic_fn(sparsify, consensus), params, base_required=True,
                      random=sparsify == "random")


METHODS: dict[str, MethodSpec] = {
    "linear": MethodSpec("linear", _linear, {"weight": Param(INPUT), "normalize": Param(SHARED, True, bool)}),
    "slerp": MethodSpec("slerp", _slerp, {"t": Param(SHARED)}, base_required=True, min_inputs=2, max_inputs=2),
    "passthrough": MethodSpec("passthrough", _passthrough, {"scale": Param(INPUT, None)}, max_inputs=1),
    "model_stock": MethodSpec("model_stock", _model_stock, {"filter_wise": Param(SHARED, False, bool)},
                              base_required=True, min_inputs=3),
    "task_arithmetic": _task_arithmetic_spec("task_arithmetic", None, None, False, False),
    "ties": _task_arithmetic_spec("ties", "magnitude", "sum", True, False),
    "dare_linear": _task_arithmetic_spec("dare_linear", "random", None, False, True),
    "dare_ties": _task_arithmetic_spec("dare_ties", "random", "sum", False, True),
}
