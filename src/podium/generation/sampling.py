"""Pure next-token selection: temperature, top-k, top-p (nucleus) and inverse-CDF sampling.

The filters follow the order transformers and vLLM use: temperature, then top-k, then
top-p. Top-p keeps the smallest set of most likely tokens whose mass reaches `top_p`
(Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration").
"""

from __future__ import annotations

import torch


def filter_logits(
    logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Scale by 1/temperature and set tokens outside top-k / top-p to -inf.

    logits: [B, V] (any float dtype; computed in float32). Returns [B, V] float32.
    `top_k == 0` and `top_p == 1` disable those filters. `temperature` must be > 0.
    """
    scores = logits.float() / temperature
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)
        mass_before = probs.cumsum(-1) - probs
        # The most likely token always survives (mass_before == 0 < top_p).
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def sample_inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Token ids drawn by inverting each row's CDF at its own uniform number.

    probs: [B, V] non-negative (need not sum to 1); uniforms: [B] in (0, 1].
    Returns [B] int64: the first index whose cumulative mass reaches u * total, so a
    token with zero probability is never chosen. Taking the uniforms from per-sequence
    streams makes a sequence's draw independent of the rest of the batch.
    """
    cdf = probs.double().cumsum(-1)
    target = uniforms.double().unsqueeze(-1) * cdf[..., -1:]
    idx = (cdf < target).sum(-1)
    return idx.clamp_(max=probs.shape[-1] - 1)


def select_next_tokens(
    logits: torch.Tensor,
    uniforms: torch.Tensor | None,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Next tokens [B] from logits [B, V]: argmax when temperature == 0, else filtered sampling."""
    if temperature == 0:
        return logits.argmax(-1)
    scores = filter_logits(logits, temperature, top_k, top_p)
    return sample_inverse_cdf(scores.softmax(-1), uniforms)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] at temperature 1, unfiltered: [B, V], [B] -> [B] float32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
