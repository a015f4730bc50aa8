"""Rendering SFT records to token ids with a loss mask on completion tokens only.

Records are TRL's formats: conversational `{"messages": [...]}` and standard or
conversational `{"prompt", "completion"}`. Labels are -100 everywhere except assistant
content (and the end-of-turn token after it) — no prompt token is ever in the loss.
"""

from __future__ import annotations

from podium.errors import DataError

IGNORE = -100


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share (where a prompt's and prompt+completion's ids diverge)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prompt_text(tokenizer, prompt) -> str:
    """A prompt as text: message lists get the chat template and the generation prompt."""
    if isinstance(prompt, list):
        return _render(tokenizer, prompt, add_generation_prompt=True)
    return prompt


def as_messages(value, role: str = "user") -> list[dict]:
    """A string becomes one turn of `role`; a message list is kept (as a new list)."""
    return list(value) if isinstance(value, list) else [{"role": role, "content": value}]


def tokenize_sft(record: dict, tokenizer, max_length: int | None = None) -> dict:
    """One record -> {"input_ids", "labels"}; labels are -100 outside completions."""
    where = record.get("_source", "record")
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
        ids, labels = [], []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise DataError(f"{where}: messages[{i}] needs 'role' and 'content'")
        full = _ids(tokenizer, _render(tokenizer, msgs, False))
        labels = [IGNORE] * len(full)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = len(_ids(tokenizer, _render(tokenizer, msgs[:i], True)))
            end = len(_ids(tokenizer, _render(tokenizer, msgs[: i + 1], False)))
            labels[start:end] = full[start:end]
        ids = full
    elif "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, list) or isinstance(completion, list):
            msgs = as_messages(prompt) + (
                completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
            )
            return tokenize_sft({"messages": msgs, "_source": where}, tokenizer, max_length)
        p = _ids(tokenizer, prompt)
        ids = _ids(tokenizer, prompt + completion) + [tokenizer.eos_token_id]
        # As TRL: the completion starts where the tokenised prompt and prompt+completion diverge.
        start = common_prefix_len(p, ids)
        labels = [IGNORE] * start + ids[start:]
    else:
        raise DataError(f"{where}: expected 'messages' or 'prompt' and 'completion' fields")
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}
