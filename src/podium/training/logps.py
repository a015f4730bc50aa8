"""Sequence log-probs of preference pairs: sums over completion tokens, four interchangeable layouts.

A batch of B pairs is laid out in one of four ways (`podium.training.pair_layout.pack_pairs`: plain as TRL,
prefix sharing in two forwards or in one row, padding-free), which give the same log-probs up to float
rounding (tested); here the forwards run over them.

Prepared masks follow the model's sliding window and per-layer-type attention
(`podium.training.attention_masks`); a layout that would not be exact for a model is turned off for
it by `attention_masks.exact_layout` before any forward. With an MoE policy, the router
load-balancing loss is computed on the same forward(s) (`podium.training.router_loss`).

Logits are computed only where a completion token is predicted (transformers' boolean
`logits_to_keep`), giving `[N, V]` with N = number of predicting positions; log-softmax is taken
by a chunked fp32 logsumexp and a gather, so no `[rows, length, V]` fp32 logits exist.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import torch
from transformers import DynamicCache

from podium.errors import PodiumError
from podium.models.introspect import cache_argument, model_config
from podium.training.attention_masks import prefix_sharing_problem, prepared_masks
from podium.training.prompt_pass import keys_values_only
from podium.training.router_loss import load_balancing_loss, recording_router_logits, router_top_k


def _forward_kwargs(model, batch: dict, device) -> dict:
    kw = {
        "input_ids": batch["input_ids"].to(device),
        "position_ids": batch["position_ids"].to(device),
        "logits_to_keep": batch["pred_mask"].to(device),
        "use_cache": False,
    }
    if batch.get("shared_mask") is not None:
        problem = prefix_sharing_problem(model)
        if problem:
            raise PodiumError(f"prefix sharing cannot be exact for this model: {problem}; "
                              "set prefix_sharing: false")
        dtype = next(model.parameters()).dtype
        kw["attention_mask"] = prepared_masks(model, batch["shared_mask"].to(device), kw["position_ids"], dtype)
        if hasattr(model_config(model), "output_router_logits"):
            # The model's own router loss assumes a 2D mask; podium computes it (router_loss).
            kw["output_router_logits"] = False
    elif batch.get("attention_mask") is not None:
        kw["attention_mask"] = batch["attention_mask"].to(device)
    return kw


def chunked_logsumexp(logits: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """logsumexp over the vocabulary `[N]` of logits `[N, V]`, in fp32, `chunk_size` rows at a time
    (so at most `[chunk_size, V]` fp32 values exist besides the logits themselves)."""
    return torch.cat([torch.logsumexp(logits[i:i + chunk_size].float(), dim=-1)
                      for i in range(0, logits.shape[0], chunk_size)])


def gathered_logps(logits: torch.Tensor, target_pred: torch.Tensor, target_ids: torch.Tensor,
                   chunk_size: int = 4096) -> torch.Tensor:
    """Per-token log-probs `[M]` from logits `[N, V]`: logit of the target minus a chunked fp32 logsumexp.

    `target_pred` `[M]` names the row of `logits` that predicts each target (a row may predict several:
    with prefix sharing the last prompt position predicts the first chosen and the first rejected token).
    """
    lse = chunked_logsumexp(logits, chunk_size)
    return logits[target_pred, target_ids].float() - lse[target_pred]


def token_logps(logits: torch.Tensor, targets: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """log softmax(logits)[target] `[N]` for logits `[N, V]` and one target per row `[N]`."""
    return logits.gather(-1, targets[:, None])[:, 0].float() - chunked_logsumexp(logits, chunk_size)


class PairLogps(NamedTuple):
    """Per-sequence summed completion log-probs `[2B]` (chosen first), completion token counts `[2B]`,
    the router load-balancing loss (scalar; None unless requested), and the token-level values they sum:
    `token_logps` `[M]` with each token's sequence `token_seg` `[M]` (i chosen of pair i, B + i rejected,
    2B + i the prompt of pair i when the batch was packed `with_prompt`), and with `log_sum_sq` the
    distribution's log sum_v p(v)^2 at each token's predicting position `[M]` (no gradient; WPO).
    `prompt_logps` / `prompt_tokens` `[B]`: the prompt's own summed log-probs and target count (`with_prompt`)."""

    logps: torch.Tensor
    n_tokens: torch.Tensor
    aux_loss: torch.Tensor | None = None
    token_logps: torch.Tensor | None = None
    token_seg: torch.Tensor | None = None
    log_sum_sq: torch.Tensor | None = None
    prompt_logps: torch.Tensor | None = None
    prompt_tokens: torch.Tensor | None = None


def chunked_log_sum_sq(logits: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """log sum_v softmax(logits)_v^2 `[N]` of logits `[N, V]`: logsumexp(2 z) - 2 logsumexp(z), fp32, no gradient."""
    with torch.no_grad():
        return torch.cat([torch.logsumexp(2 * logits[i:i + chunk_size].float(), dim=-1)
                          - 2 * torch.logsumexp(logits[i:i + chunk_size].float(), dim=-1)
                          for i in range(0, logits.shape[0], chunk_size)])


def pair_logps(model, batch: dict, *, router_loss: bool = False, log_sum_sq: bool = False) -> PairLogps:
    """Summed completion log-probs of a packed batch, and with `router_loss` the MoE router loss
    of the same forward, weighted to equal TRL's on its padded layout; `log_sum_sq` adds WPO's per-token
    log sum_v p(v)^2."""
    device = next(model.parameters()).device
    if batch.get("layout") == "prompt_cache":
        logits, routed, weight = _prompt_cache_forward(model, batch, device, router_loss)
    else:
        kw = _forward_kwargs(model, batch, device)
        with recording_router_logits(model) if router_loss else nullcontext() as routed:
            logits = model(**kw).logits
        if logits.dim() == 3:  # a model that ignores boolean logits_to_keep returns [R, L, V]
            logits = logits[batch["pred_mask"].to(logits.device)]
        weight = batch["token_weight"]
    seg = batch["target_seg"].to(device)
    pred = batch["target_pred"].to(device)
    tok = gathered_logps(logits, pred, batch["target_ids"].to(device))
    B = batch["n_pairs"]
    n = 2 * B
    width = max(n, int(seg.max()) + 1 if seg.numel() else 0)  # 3B with the prompt's segments
    sums = torch.zeros(width, dtype=tok.dtype, device=device).index_add(0, seg, tok)
    counts = torch.zeros(width, dtype=torch.long, device=device).index_add(0, seg, torch.ones_like(seg))
    aux = load_balancing_loss(routed, router_top_k(model), weight) if router_loss else None
    lss = chunked_log_sum_sq(logits)[pred] if log_sum_sq else None
    prompt = width > n
    return PairLogps(sums[:n], counts[:n], aux, tok, seg, lss, sums[n:] if prompt else None,
                     counts[n:] if prompt else None)


def _prompt_cache_forward(model, batch: dict, device, router_loss: bool):
    """The two forwards of the `prompt_cache` layout: logits `[N, V]` of the kept positions (the first forward's
    when the batch keeps them, `prompt_pred`, then the second's), and for the router loss one `[tokens, E]`
    tensor per MoE layer (both forwards' tokens) with their weights."""
    problem = prefix_sharing_problem(model)
    if problem:
        raise PodiumError(f"prefix sharing cannot be exact for this model: {problem}; set prefix_sharing: false")
    extra = {"output_router_logits": False} if hasattr(model_config(model), "output_router_logits") else {}
    cache = DynamicCache(config=model_config(model))
    extra[cache_argument(model)] = cache
    prompts = batch["prompt_ids"].shape[1] > 0  # every prompt one token long: the second forward is all
    prompt_pred = batch.get("prompt_pred")
    first = None
    with recording_router_logits(model) if router_loss else nullcontext() as routed:
        if prompts:
            if prompt_pred is not None:  # the prompt's own log-probs are wanted: keep its logits
                keep = prompt_pred.to(device)
                first = model(input_ids=batch["prompt_ids"].to(device), attention_mask=batch["prompt_mask"].to(device),
                              position_ids=batch["prompt_positions"].to(device), use_cache=True, logits_to_keep=keep,
                              **extra).logits
                if first.dim() == 3:
                    first = first[keep]
            else:
                # Only the cache is kept from this forward, so its last layer computes keys and values alone.
                with keys_values_only(model) if not router_loss else nullcontext():
                    model(input_ids=batch["prompt_ids"].to(device), attention_mask=batch["prompt_mask"].to(device),
                          position_ids=batch["prompt_positions"].to(device), use_cache=True, logits_to_keep=1,
                          **extra)
            cache.batch_repeat_interleave(2)  # each prompt's keys and values for its chosen and its rejected row
        pred = batch["completion_pred"].to(device)
        rest = model(input_ids=batch["completion_ids"].to(device), attention_mask=batch["cache_mask"].to(device),
                     position_ids=batch["completion_positions"].to(device), use_cache=True,
                     logits_to_keep=pred, **extra).logits
    if rest.dim() == 3:  # a model that ignores boolean logits_to_keep returns [R, L, V]
        rest = rest[pred]
    if first is not None:
        rest = torch.cat([first, rest])
    if not router_loss:
        return rest, None, None
    if not prompts:
        return rest, routed, batch["completion_weight"].reshape(-1)
    layers = len(routed) // 2  # each MoE layer ran once per forward
    routed = [torch.cat([routed[i], routed[layers + i]]) for i in range(layers)]
    weight = torch.cat([batch["prompt_weight"].reshape(-1), batch["completion_weight"].reshape(-1)])
    return rest, routed, weight


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs and completion token counts of a packed batch.

    Returns `(logps [2B], n_tokens [2B])`; the first B entries are chosen, the last B rejected.
    """
    out = pair_logps(model, batch)
    return out.logps, out.n_tokens
