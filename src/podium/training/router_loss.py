"""The mixture-of-experts router load-balancing loss, added to the training loss as TRL adds it.

Switch Transformer (Fedus et al. 2021, arXiv:2101.03961, eqs. 4-6) in the form transformers'
Mixtral uses (`load_balancing_loss_func`) and TRL 1.16 adds to its DPO and SFT losses:

    aux = E * sum_e f_e * P_e

with E experts, f_e the fraction of top-k routing assignments that go to expert e and P_e the mean
router probability of e, both pooled over every layer and every real token of the batch. TRL adds
`router_aux_loss_coef * aux` once per batch, with the coefficient from the model config, whenever
the model is an MoE that can return router logits (its config has `output_router_logits`) and the
coefficient is not 0; `router_aux_loss_coef` in a stage config overrides it (0 turns it off).

podium's packed layouts hold a token once where TRL's padded rows hold it more than once (a shared
prompt stands for both its chosen and its rejected row), so each token carries a weight, the
number of TRL rows it stands for; with those weights the pooled means are TRL's exactly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from podium.errors import PodiumError
from podium.models.introspect import architecture, model_config

NO_ROUTER = ("{arch} declares router logits (output_router_logits) but podium finds no router module to read them "
             "from, so its load-balancing loss cannot be added as TRL adds it; set router_aux_loss_coef: 0 to train "
             "without it")


def router_aux_coef(model, override: float | None = None) -> float:
    """The coefficient of the router loss for `model` (0.0: off), as TRL 1.16 decides it.

    An `override` on a model that is not a mixture of experts is a PodiumError, and so is a
    coefficient on an MoE whose router logits podium cannot read (checked before any training).
    """
    config = model_config(model)
    is_moe = hasattr(config, "output_router_logits")
    if override is not None and override != 0 and not is_moe:
        raise PodiumError(f"router_aux_loss_coef is {override} but {architecture(model)} is not a "
                          "mixture-of-experts model with router logits; remove the setting")
    coef = getattr(config, "router_aux_loss_coef", 0.0) if override is None else override
    coef = float(coef or 0.0) if is_moe else 0.0
    if coef and not router_modules(model):
        raise PodiumError(NO_ROUTER.format(arch=architecture(model)))
    return coef


def router_top_k(model) -> int:
    """Experts each token is routed to (`num_experts_per_tok`)."""
    return int(model_config(model).num_experts_per_tok)


def load_balancing_loss(router_logits: list[torch.Tensor], top_k: int, token_weight: torch.Tensor) -> torch.Tensor:
    """Weighted Switch-Transformer load-balancing loss (module doc).

    `router_logits`: one `[N, E]` tensor per MoE layer, rows in the order of `token_weight` `[N]`
    (a token's weight is how many sequences of TRL's layout it stands for; padding has 0).
    Softmax and top-k run in the logits' dtype, the sums in fp32 (as transformers does).
    """
    num_experts = router_logits[0].shape[-1]
    device = router_logits[0].device
    w = token_weight.reshape(-1).to(device=device, dtype=torch.float32)
    assigned = torch.zeros(num_experts, dtype=torch.float32, device=device)
    prob = torch.zeros(num_experts, dtype=torch.float32, device=device)
    total = torch.zeros((), dtype=torch.float32, device=device)
    for logits in router_logits:
        p = torch.softmax(logits.to(device), dim=-1)
        chosen = torch.topk(p, top_k, dim=-1).indices  # [N, k]
        assigned = assigned.index_add(0, chosen.reshape(-1), w.repeat_interleave(top_k))
        prob = prob + (p.float() * w[:, None]).sum(0)
        total = total + w.sum()
    return num_experts * torch.sum((assigned / total) * (prob / total))


def router_modules(model) -> list[tuple[torch.nn.Module, int]]:
    """(module, output index) of every router whose output holds the router logits."""
    recorder = None
    for m in model.modules():
        spec = (getattr(type(m), "_can_record_outputs", None) or {}).get("router_logits")
        if spec is not None:
            recorder = spec
            break
    if recorder is None:
        return []
    target = getattr(recorder, "target_class", recorder)
    index = getattr(recorder, "index", 0) or 0
    return [(m, index) for m in model.modules() if isinstance(m, target)]


@contextmanager
def recording_router_logits(model):
    """Collect each router's logits `[N, E]` (in forward order) into the yielded list.

    Hooks instead of `output_router_logits=True`: the model's own aux-loss code assumes a 2D
    attention mask and cannot take podium's prepared masks.
    """
    routers = router_modules(model)
    if not routers:
        raise PodiumError(NO_ROUTER.format(arch=architecture(model)))
    collected: list[torch.Tensor] = []

    def recorder(index):
        def hook(_module, _inputs, output):
            collected.append(output[index] if isinstance(output, (tuple, list)) else output)

        return hook

    handles = [m.register_forward_hook(recorder(index)) for m, index in routers]
    try:
        yield collected
    finally:
        for h in handles:
            h.remove()

