"""The preference objective: a batch of pairs -> (sum of per-pair losses, per-pair metrics).

The loss itself comes from the `podium.losses.LOSSES` registry by objective name (docs/OBJECTIVES.md), or is
a weighted sum of several (`objective: [sigmoid, bco_pair, sft]` with `loss_weights`, TRL's MPO). This module
only computes policy log-probs, looks up cached reference log-probs, applies what TRL applies around the loss
(LD-DPO's length-desensitised log-probs, `podium.losses.length`; WPO's pair weights, `podium.losses.wpo`; KTO's
KL estimate averaged over processes) and reports the metrics TRL logs. Reduction (dividing by the step's pair
count) happens in the shared loop; losses that are functions of the whole batch (sft, aot, KTO, CPO and ORPO's
NLL) see the micro-batch, as TRL's see the per-device batch.

Unpaired examples (KTO) are laid out as pairs (`podium.data.unpaired`): the completion in the chosen slot, its
mismatched KL completion in the rejected slot, so every layout and the reference cache apply unchanged.

For a mixture-of-experts policy the router load-balancing loss is added as TRL 1.16 adds it:
`router_aux_loss_coef * aux_loss` once per batch (so `B * coef * aux` to the batch's loss sum),
logged as `aux_loss` (`podium.training.router_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from podium.data.preference import FLOAT_FIELDS
from podium.losses import LOSS_SPECS, LOSSES, LossOutput, objective_names, weighted_sum
from podium.losses.kto import kto_kl_estimate
from podium.losses.length import length_desensitized_logps
from podium.losses.wpo import wpo_weights
from podium.training.logps import pair_logps
from podium.training.pair_layout import pack_pairs

BATCH_FIELDS = FLOAT_FIELDS + ("label",)


def make_collate(pad_token_id: int, reference_logps: torch.Tensor | None, *, prefix_sharing: bool,
                 padding_free: bool, with_prompt: bool = False, unpaired: bool = False,
                 ld_reference_logps: torch.Tensor | None = None) -> Callable[[list[dict]], dict]:
    """`collate(examples) -> batch` for the loop: packed tokens plus reference log-probs `[B]` (none for a
    reference-free objective); `ld_reference_logps` `[N, 2]` are LD-DPO's (`*_ld` keys); `with_prompt` packs
    the prompts' own tokens as targets (ORPO); `unpaired`: examples hold a completion and its KL completion (KTO)."""

    def collate(examples: list[dict]) -> dict:
        batch = pack_pairs(examples, pad_token_id, prefix_sharing=prefix_sharing, padding_free=padding_free,
                           with_prompt=with_prompt, unpaired=unpaired)
        idx = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
        batch["index"] = idx
        for ref, suffix in ((reference_logps, ""), (ld_reference_logps, "_ld")):
            if ref is not None:
                batch[f"reference_chosen_logps{suffix}"] = ref[idx, 0]
                batch[f"reference_rejected_logps{suffix}"] = ref[idx, 1]
        for key in BATCH_FIELDS:
            if all(key in ex for ex in examples):
                batch[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
        batch["count"] = len(examples)
        return batch

    return collate


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over the processes of a distributed run (itself on one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x = x / dist.get_world_size()
    return x


class PreferenceObjective:
    """`objective(model, batch) -> (loss_sum, metrics)` for a policy loss of `podium.losses` or a weighted sum.

    `objective`: a `LOSS_SPECS` name or a list of them; `loss_weights`: one per name (default 1 each).
    The loss's inputs and hyper-parameters are those its `LOSS_SPECS` entry names; `loss_fn` replaces the
    registry function of a single objective (tests). `ld_alpha` and `use_weighting` apply to the components
    that list them. `router_aux_loss_coef` > 0 adds the MoE router loss
    (`podium.training.router_loss.router_aux_coef` gives TRL's value for a model).
    """

    def __init__(self, objective: str | Sequence[str], loss_fn: Callable | None = None, *,
                 loss_weights: Sequence[float] | None = None, ld_alpha: float | None = None,
                 use_weighting: bool = False, router_aux_loss_coef: float = 0.0, **hyperparameters):
        names = objective_names(objective)
        self.objective = names[0] if len(names) == 1 else list(names)
        self.specs = [LOSS_SPECS[n] for n in names]
        self.weights = [float(w) for w in loss_weights] if loss_weights is not None else [1.0] * len(names)
        self.loss_fns = [loss_fn if loss_fn is not None and len(names) == 1 else LOSSES[n] for n in names]
        self.hyperparameters = [{k: v for k, v in hyperparameters.items() if k in s.hyperparameters}
                                for s in self.specs]
        self.ld_alpha = [ld_alpha if ld_alpha is not None and "ld_alpha" in s.settings else None for s in self.specs]
        self.weighting = [bool(use_weighting) and "use_weighting" in s.settings for s in self.specs]
        self.router_aux_loss_coef = float(router_aux_loss_coef)
        self.inputs = tuple(dict.fromkeys(i for s in self.specs for i in s.inputs))
        self.unpaired = any(s.unpaired for s in self.specs)
        self.with_prompt = "prompt_logps" in self.inputs
        self.reference_free = all(s.reference_free for s in self.specs)

    def __call__(self, model, batch: dict):
        out = pair_logps(model, batch, router_loss=self.router_aux_loss_coef != 0, log_sum_sq=any(self.weighting))
        B = batch["n_pairs"]
        logps = out.logps
        device, dtype = logps.device, logps.dtype
        completion = out.token_seg < 2 * B  # the prompt's own tokens (with_prompt) are not a completion's
        available = {
            "policy_chosen_logps": logps[:B],
            "policy_rejected_logps": logps[B:],
            "nll_chosen_logps": logps[:B],
            "chosen_lengths": out.n_tokens[:B].to(dtype),
            "rejected_lengths": out.n_tokens[B:].to(dtype),
        }
        if "reference_chosen_logps" in batch:
            available["reference_chosen_logps"] = batch["reference_chosen_logps"].to(device, dtype)
            available["reference_rejected_logps"] = batch["reference_rejected_logps"].to(device, dtype)
        if out.prompt_logps is not None:
            available["prompt_logps"] = out.prompt_logps
            available["prompt_lengths"] = out.prompt_tokens.to(dtype)
        available.update({k: batch[k].to(device, dtype) for k in BATCH_FIELDS if k in batch})
        if self.unpaired:  # the completion sits in the chosen slot, its KL completion in the rejected one
            available.update(policy_logps=available["policy_chosen_logps"],
                             policy_kl_logps=available["policy_rejected_logps"])
            if "reference_chosen_logps" in available:
                available.update(reference_logps=available["reference_chosen_logps"],
                                 reference_kl_logps=available["reference_rejected_logps"])
        weights = None
        if any(self.weighting):
            weights = wpo_weights(out.token_logps[completion], out.log_sum_sq[completion], out.token_seg[completion], B)

        results, shown = [], None
        for spec, fn, hyper, ld_alpha, weighted in zip(self.specs, self.loss_fns, self.hyperparameters, self.ld_alpha,
                                                       self.weighting):
            source = available
            if ld_alpha is not None:
                ld = length_desensitized_logps(out.token_logps[completion], out.token_seg[completion], B, ld_alpha)
                source = {**available, "policy_chosen_logps": ld[:B], "policy_rejected_logps": ld[B:]}
                if "reference_chosen_logps_ld" in batch:
                    source["reference_chosen_logps"] = batch["reference_chosen_logps_ld"].to(device, dtype)
                    source["reference_rejected_logps"] = batch["reference_rejected_logps_ld"].to(device, dtype)
            kwargs = {k: source[k] for k in spec.inputs}
            if "policy_kl_logps" in spec.inputs:  # KTO: TRL averages the batch's KL estimate over processes
                kwargs["kl"] = mean_over_processes(kto_kl_estimate(source["policy_kl_logps"],
                                                                   source["reference_kl_logps"]))
            result = fn(**kwargs, **hyper)
            if weighted:
                result = result._replace(losses=result.losses * weights)
            results.append(result)
            if shown is None and result.chosen_rewards is not None:
                shown = (spec, source)
        combined = weighted_sum(results, self.weights)
        spec, source = shown or (self.specs[0], available)
        return self._loss_sum(combined, out.aux_loss, B), self._metrics(combined, spec, source, out.aux_loss, B)

    def _loss_sum(self, combined: LossOutput, aux, B: int) -> torch.Tensor:
        loss_sum = combined.losses.sum()
        if aux is not None:
            loss_sum = loss_sum + B * self.router_aux_loss_coef * aux.to(loss_sum.dtype)
        return loss_sum

    def _metrics(self, combined: LossOutput, spec, source: dict, aux, B: int) -> dict[str, torch.Tensor]:
        """TRL's per-example metrics; NaN marks an example a metric does not cover (the loop leaves it out)."""
        chosen, rejected = source["policy_chosen_logps"].detach(), source["policy_rejected_logps"].detach()
        if spec.average_logps:  # TRL logs the average log-probs these losses compare
            chosen = chosen / source["chosen_lengths"].clamp(min=1)
            rejected = rejected / source["rejected_lengths"].clamp(min=1)
        if self.unpaired:
            desirable = source["label"].bool()
            nan = torch.full_like(chosen, float("nan"))
            metrics = {"logps/chosen": torch.where(desirable, chosen, nan),
                       "logps/rejected": torch.where(desirable, nan, chosen)}
            if combined.chosen_rewards is not None:
                metrics.update({"rewards/chosen": combined.chosen_rewards.detach(),
                                "rewards/rejected": combined.rejected_rewards.detach()})
        else:
            metrics = {"logps/chosen": chosen, "logps/rejected": rejected}
            if combined.chosen_rewards is not None:
                c, r = combined.chosen_rewards.detach(), combined.rejected_rewards.detach()
                metrics.update({"rewards/chosen": c, "rewards/rejected": r, "rewards/margins": c - r,
                                "rewards/accuracies": (c > r).float()})
        metrics.update({k: v.detach() for k, v in (combined.metrics or {}).items()})
        if aux is not None:
            metrics["aux_loss"] = aux.detach().expand(B)
        return metrics

