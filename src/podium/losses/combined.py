"""Weighted sums of objectives: TRL's ``loss_type=[...]`` with ``loss_weights`` (e.g. MPO).

Reference: MPO, Wang et al. 2024, "Enhancing the Reasoning Ability of Multimodal Large Language Models via
Mixed Preference Optimization" (arXiv:2411.10442): sigmoid (0.8) + bco_pair (0.2) + sft (1.0). TRL 1.16
adds each loss type's batch mean times its weight; per pair that is the weighted sum below, whose mean
over the batch is TRL's loss.
"""

from __future__ import annotations

from collections.abc import Sequence

from podium.losses.output import LossOutput


def weighted_sum(outputs: Sequence[LossOutput], weights: Sequence[float]) -> LossOutput:
    """sum_k w_k * losses_k [B]; rewards of the first output that has them; metrics of all (first wins)."""
    if len(outputs) != len(weights) or not outputs:
        raise ValueError(f"{len(outputs)} losses and {len(weights)} weights")
    losses = sum(w * out.losses for out, w in zip(outputs, weights))
    with_rewards = next((out for out in outputs if out.chosen_rewards is not None), outputs[0])
    metrics = {}
    for out in reversed(outputs):
        metrics.update(out.metrics or {})
    return LossOutput(losses, with_rewards.chosen_rewards, with_rewards.rejected_rewards, metrics or None)
