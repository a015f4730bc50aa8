"""The merge-method table: each method's name, parameters (scope, default) and a thin wrapper.

A wrapper turns the executor's uniform call `fn(tensors, base_index, shared, per_input, rng)`
(rng: a numpy Generator for methods with `random`, else None) into a call of the pure function
in `methods.py`; parameter names and defaults are mergekit 0.1.5's, so its YAML configs
validate here unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podium.merging.methods import linear, model_stock, passthrough, slerp, task_arithmetic

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
    fn: Callable  # fn(tensors, base_index, shared, per_input, rng) -> Tensor; may overwrite `tensors`
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
            rescale=shared["rescale"], lam=shared["lambda"], rng=gen, reuse_inputs=True,
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


MERGE_METHODS: dict[str, MethodSpec] = {
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
