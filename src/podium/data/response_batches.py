"""Prompt + response sequences as token batches for models that score whole responses.

Reward models, GPMs and pairwise scorers read `prompt + response` rendered with the tokenizer's
chat template, and pool the last token (and, for GPM gates, the last prompt token). A prompt is
a string (one user turn) or a message list; a response a string (one assistant turn) or a
message list appended after the prompt. Pairs (`{"prompt", "chosen", "rejected"}`, TRL
standard or conversational) are read with `podium.data.preference.read_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from podium.data.chat import as_messages, common_prefix_len, render_chat
from podium.data.collate import attention_mask, right_pad


def encode_response(tokenizer, prompt, response) -> tuple[list[int], int]:
    """Token ids of prompt + response and the number of prompt tokens.

    The prompt length is where the tokenised prompt (with the generation prompt) and the full
    text diverge, as TRL does, so templates that merge tokens at the seam stay correct.
    """
    prompt_msgs = as_messages(prompt, "user")
    full = render_chat(tokenizer, prompt_msgs + as_messages(response, "assistant"), False, "response")
    head = render_chat(tokenizer, prompt_msgs, True, "prompt")
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    return ids, common_prefix_len(ids, head_ids)


def pad_responses(pad_id: int, sequences: Sequence[list[int]], prompt_lengths: Sequence[int],
                  max_length: int | None = None) -> dict:
    """Right-pad encoded responses. Sequences over `max_length` keep their last tokens (the pooled end).

    Returns input_ids [N, T], attention_mask [N, T], prompt_lengths [N].
    """
    rows, lens = [], []
    for ids, n in zip(sequences, prompt_lengths):
        if max_length is not None and len(ids) > max_length:
            cut = len(ids) - max_length
            ids, n = ids[cut:], max(n - cut, 1)
        rows.append(ids)
        lens.append(n)
    return {"input_ids": right_pad(rows, pad_id), "attention_mask": attention_mask(rows),
            "prompt_lengths": torch.tensor(lens, dtype=torch.long)}


def make_pair_collate(tokenizer, max_length: int | None = None):
    """collate(records) -> batch with chosen rows [:B] then rejected rows [B:], `count` = B pairs."""

    def collate(records: Sequence[dict]) -> dict:
        chosen = [encode_response(tokenizer, r["prompt"], r["chosen"]) for r in records]
        rejected = [encode_response(tokenizer, r["prompt"], r["rejected"]) for r in records]
        both = chosen + rejected
        batch = pad_responses(tokenizer.pad_token_id, [ids for ids, _ in both], [n for _, n in both], max_length)
        batch["count"] = len(records)
        return batch

    return collate
