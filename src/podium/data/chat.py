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


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool, where: str = "record") -> str:
    """The chat template applied to `messages` (none: ""); a template that refuses them is the record's problem."""
    if not messages:
        return ""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - jinja2's TemplateError, transformers' ValueError: the record's roles
        raise DataError(f"{where}: the tokenizer's chat template cannot render these messages "
                        f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None


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
        return render_chat(tokenizer, prompt, add_generation_prompt=True)
    return prompt


def as_messages(value, role: str = "user") -> list[dict]:
    """A string becomes one turn of `role`; a message list is kept (as a new list)."""
    return list(value) if isinstance(value, list) else [{"role": role, "content": value}]


def json_type(value) -> str:
    """How a value reads in the JSONL file (`null`, not `NoneType`)."""
    return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
            list: "list", dict: "object"}.get(type(value), type(value).__name__)


def check_messages(msgs, where: str, field: str) -> list[dict]:
    """A non-empty list of `{role, content}` with string contents; else a DataError naming record and field.

    `content: null` would render as an empty turn and train toward an empty answer.
    """
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: field {field!r} must be a string or a non-empty list of {{role, content}} messages "
                        f"(got {json_type(msgs)})")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: {field}[{i}] needs 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: {field}[{i}].content must be a string (got {json_type(m['content'])})")
        if not isinstance(m["role"], str):
            raise DataError(f"{where}: {field}[{i}].role must be a string (got {json_type(m['role'])})")
    return msgs


def check_text_or_messages(value, where: str, field: str):
    if isinstance(value, str):
        return value
    return check_messages(value, where, field)


def tokenize_sft(record: dict, tokenizer, max_length: int | None = None) -> dict:
    """One record -> {"input_ids", "labels"}; labels are -100 outside completions."""
    where = record.get("_source", "record")
    if "messages" in record:
        msgs = check_messages(record["messages"], where, "messages")
        full = _ids(tokenizer, render_chat(tokenizer, msgs, False, where))
        labels = [IGNORE] * len(full)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = len(_ids(tokenizer, render_chat(tokenizer, msgs[:i], True, where)))
            end = len(_ids(tokenizer, render_chat(tokenizer, msgs[: i + 1], False, where)))
            labels[start:end] = full[start:end]
        ids = full
    elif "prompt" in record and "completion" in record:
        prompt = check_text_or_messages(record["prompt"], where, "prompt")
        completion = check_text_or_messages(record["completion"], where, "completion")
        if isinstance(prompt, list) or isinstance(completion, list):
            msgs = as_messages(prompt) + as_messages(completion, "assistant")
            return tokenize_sft({"messages": msgs, "_source": where}, tokenizer, max_length)
        p = _ids(tokenizer, prompt)
        ids = _ids(tokenizer, prompt + completion) + [tokenizer.eos_token_id]
        # As TRL: the completion starts where the tokenised prompt and prompt+completion diverge.
        start = common_prefix_len(p, ids)
        labels = [IGNORE] * start + ids[start:]
    else:
        raise DataError(f"{where}: expected 'messages' or 'prompt' and 'completion' fields")
    return truncate_sft({"input_ids": ids, "labels": labels}, max_length)[0]


def truncate_sft(example: dict, max_length: int | None) -> tuple[dict, bool]:
    """Cut an example to `max_length` tokens; also says whether completion tokens (tail, EOS) were lost."""
    ids, labels = example["input_ids"], example["labels"]
    if max_length is None or len(ids) <= max_length:
        return example, False
    lost = any(label != IGNORE for label in labels[max_length:])
    return {**example, "input_ids": ids[:max_length], "labels": labels[:max_length]}, lost
