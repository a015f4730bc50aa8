"""Preference pair records -> token batches for the reward and GPM models.

A record is `{"prompt", "chosen", "rejected"}` (TRL standard or conversational): the prompt is a
string (one user turn) or a message list; a response is a string (one assistant turn) or a
message list appended after the prompt. Text is rendered with the tokenizer's chat template.

Pairs are read with `podium.data.preference.read_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def as_messages(value, role: str) -> list[dict]:
    """A string becomes one turn of `role`; a message list is kept."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return list(value)


def response_text(response) -> str:
    """The assistant text of a response given as a string or a message list."""
    if isinstance(response, str):
        return response
    return "".join(m.get("content", "") for m in response)


def encode(tokenizer, prompt, response) -> tuple[list[int], int]:
    """Token ids of prompt + response and the number of prompt tokens.

    The prompt length is where the tokenised prompt (with the generation prompt) and the full
    text diverge, as TRL does, so templates that merge tokens at the seam stay correct.
    """
    prompt_msgs = as_messages(prompt, "user")
    full = tokenizer.apply_chat_template(prompt_msgs + as_messages(response, "assistant"), tokenize=False)
    head = tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    n = 0
    for a, b in zip(ids, head_ids):
        if a != b:
            break
        n += 1
    return ids, n


def pad_batch(tokenizer, sequences: Sequence[list[int]], prompt_lengths: Sequence[int],
              max_length: int | None = None) -> dict:
    """Right-pad token lists. Sequences over `max_length` keep their last tokens (the pooled end).

    Returns input_ids [N, T], attention_mask [N, T], prompt_lengths [N].
    """
    rows, lens = [], []
    for ids, n in zip(sequences, prompt_lengths):
        if max_length is not None and len(ids) > max_length:
            cut = len(ids) - max_length
            ids, n = ids[cut:], max(n - cut, 1)
        rows.append(ids)
        lens.append(n)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "prompt_lengths": torch.tensor(lens, dtype=torch.long)}


def make_pair_collate(tokenizer, max_length: int | None = None):
    """collate(records) -> batch with chosen rows [:B] then rejected rows [B:], `count` = B pairs."""

    def collate(records: Sequence[dict]) -> dict:
        chosen = [encode(tokenizer, r["prompt"], r["chosen"]) for r in records]
        rejected = [encode(tokenizer, r["prompt"], r["rejected"]) for r in records]
        both = chosen + rejected
        batch = pad_batch(tokenizer, [ids for ids, _ in both], [n for _, n in both], max_length)
        batch["count"] = len(records)
        return batch

    return collate


