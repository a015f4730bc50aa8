"""What a policy objective reads besides the policy: its examples and its reference log-probs.

- Examples: preference pairs (`podium.data.preference`), or unpaired `{prompt, completion, label}` records laid
  out as pairs with their KL completions (`podium.data.unpaired`) for KTO.
- Reference log-probs `[N, 2]`: none for a reference-free objective (SimPO, CPO, ORPO, sft: no reference model is
  loaded and no reference pass runs); otherwise the cached pass of `podium.training.reference` by the reference
  model, the base model under LoRA, the policy itself, or a sharded copy under FSDP / ZeRO-3. Under LD-DPO
  (`ld_alpha`) a second cached pass scores each completion cut to its pair's common length, and the reference's
  length-desensitised log-probs are `shared + alpha * (full - shared)` (`podium.losses.length`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from podium.data.preference import PairStats, read_pairs, tokenize_pairs
from podium.data.rendering import chat_record
from podium.data.unpaired import read_unpaired, tokenize_unpaired
from podium.losses import LOSS_SPECS, check_records, length_desensitized_reference
from podium.training.attention_masks import check_causal, exact_layout
from podium.training.reference import cached_reference_logps, sharded_reference_logps, sharded_training


def needs_kl(objectives: tuple[str, ...]) -> bool:
    return any("policy_kl_logps" in LOSS_SPECS[n].inputs for n in objectives)


def read_examples(objectives: tuple[str, ...], data, tokenizer, *, max_length: int | None, batch_size: int,
                  seed: int, log, stage: str = "train") -> tuple[list[dict], PairStats]:
    """Tokenised examples for `objectives`: pairs, or unpaired examples with KL completions rotated within
    groups of `batch_size` (TRL's per-device batch). Records are rendered by the one rule (`chat_record`)."""
    if any(LOSS_SPECS[n].unpaired for n in objectives):
        rows = [chat_record(r, tokenizer, stage) for r in read_unpaired(data, seed=seed, log=log)]
        return tokenize_unpaired(rows, tokenizer, max_length, kl_group=batch_size if needs_kl(objectives) else None)
    rows = [chat_record(r, tokenizer, stage) for r in read_pairs(data, seed=seed, log=log)]
    check_records(objectives, rows, source=str(data))
    return tokenize_pairs(rows, tokenizer, max_length)


def common_length_examples(examples: list[dict]) -> list[dict]:
    """Each example with both completions cut to the pair's common length (LD-DPO's shared part)."""
    out = []
    for ex in examples:
        m = min(len(ex["chosen_ids"]), len(ex["rejected_ids"]))
        out.append({**ex, "chosen_ids": ex["chosen_ids"][:m], "rejected_ids": ex["rejected_ids"][:m]})
    return out


def reference_logps(cfg, model, examples: list[dict], pad_token_id: int, load: Callable[[str], torch.nn.Module], *,
                    prefix_sharing: bool, padding_free: bool, ld_alpha: float | None, log
                    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """`(reference [N, 2], LD-DPO reference [N, 2] or None, cache hit)` for a policy objective.

    `cfg` carries `reference`, `model`, `lora`, `dtype`, `prefix_sharing`, `padding_free`,
    `reference_cache_dir` and `reference_batch_size`; `load(path)` loads a model as the stage does.
    """
    sets = [examples] + ([common_length_examples(examples)] if ld_alpha is not None else [])
    kwargs = {"cache_dir": cfg.reference_cache_dir, "batch_size": cfg.reference_batch_size}
    if sharded_training():
        # FSDP / ZeRO-3: a sharded copy of the reference (the base model when LoRA is on) scores the pairs.
        source = cfg.reference or cfg.model
        results = [sharded_reference_logps(lambda: load(source), source, s, pad_token_id, dtype=cfg.dtype,
                                           prefix_sharing=prefix_sharing, padding_free=padding_free, **kwargs)
                   for s in sets]
    elif cfg.reference is not None:
        ref_model = load(cfg.reference)
        check_causal(ref_model)
        ref_ps, ref_pf = exact_layout(ref_model, cfg.prefix_sharing, cfg.padding_free, log)
        results = [cached_reference_logps(ref_model, s, pad_token_id, prefix_sharing=ref_ps, padding_free=ref_pf,
                                          **kwargs) for s in sets]
        del ref_model
    else:
        # The frozen copy of `model` is the model before training: its log-probs are all we need of it.
        results = [cached_reference_logps(model, s, pad_token_id, adapter_disabled=cfg.lora is not None,
                                          prefix_sharing=prefix_sharing, padding_free=padding_free, **kwargs)
                   for s in sets]
    full, hit = results[0]
    ld = length_desensitized_reference(full, results[1][0], ld_alpha) if ld_alpha is not None else None
    return full, ld, hit and all(h for _, h in results)
