"""The one rendering rule: what a model trains on is what it is sampled and judged with.

When the model's tokenizer has a chat template, every stage (sft, train, generate, sgd, selfplay, eval)
renders prompts through it: a string prompt is one user turn, a string completion (`completion`,
`chosen`, `rejected`) one assistant turn, and message lists are rendered as they are. Without this,
a string prompt/completion pair would be concatenated as raw text for SFT and DPO while the same
model's samples are drawn from template-rendered prompts: train and inference formats would disagree.

A source opts out with `chat_template: false` (continued pretraining of a base model): its records
are plain text and carry `"chat_template": false`, which every later file keeps (prompts, samples,
pairs), so a pair built from a plain prompt stays plain. A tokenizer without a chat template renders
plain strings as they are (TRL's "standard" format); a record that needs a template (message lists:
multi-turn conversations, system prompts, built-in task turns) is then a `ConfigError` naming the
stage, found by `podium run --dry-run` (podium.data.source_check).
"""

from __future__ import annotations

from podium.data.chat import as_messages
from podium.errors import ConfigError

PLAIN_KEY = "chat_template"  # a record's opt-out: {"chat_template": false}
TEXT_FIELDS = ("prompt", "completion", "chosen", "rejected")
TURN_SEPARATOR = "\n\n"  # between the turns of a conversation flattened to plain text


def has_chat_template(tokenizer) -> bool:
    """Whether `tokenizer` renders conversations itself (a `chat_template`)."""
    return bool(getattr(tokenizer, "chat_template", None))


def is_plain(record: dict) -> bool:
    """Whether the record's source opted out of the chat template (`chat_template: false`)."""
    return record.get(PLAIN_KEY) is False


def plain_text(value, prompt: bool = False) -> str:
    """A message list as plain text: turn contents joined by a blank line; a prompt ends with one, so the
    completion starts its own paragraph. A string is kept as it is."""
    if isinstance(value, str):
        return value
    text = TURN_SEPARATOR.join(str(m.get("content", "")) for m in value)
    return text + TURN_SEPARATOR if prompt and text else text


def needs_template_error(stage: str, where: str) -> ConfigError:
    return ConfigError(f"stage {stage!r}: {where}: this record is a conversation (message list), and the model's "
                       "tokenizer has no chat template to render it; use a model whose tokenizer has one, or set "
                       "`chat_template: false` on the source to train on plain text (base-model continued pretraining)")


def chat_record(record: dict, tokenizer, stage: str = "stage") -> dict:
    """`record` (SFT or preference) rendered by the rule: its string fields become turns when the tokenizer has a
    chat template, message lists stay; plain records stay plain. Returns a new dict; the input is not changed."""
    if is_plain(record):
        return record
    if has_chat_template(tokenizer):
        out = dict(record)
        for key in TEXT_FIELDS:
            if isinstance(record.get(key), str):
                out[key] = as_messages(record[key], "user" if key == "prompt" else "assistant")
        return out
    if "messages" in record or any(isinstance(record.get(k), list) for k in TEXT_FIELDS):
        raise needs_template_error(stage, record.get("_source", "a record"))
    return record


def chat_prompt(record: dict, tokenizer, stage: str = "stage"):
    """The prompt of a prompt record as the sampler should see it: a message list (rendered with the chat
    template and the generation prompt) or a plain string (tokenised as it is)."""
    prompt = record["prompt"]
    if is_plain(record):
        return plain_text(prompt, prompt=True)
    if has_chat_template(tokenizer):
        return as_messages(prompt)
    if isinstance(prompt, list):
        raise needs_template_error(stage, record.get("_source", "a prompt"))
    return prompt


def response_pair(prompt, chosen: str, rejected: str) -> dict:
    """A pair of responses to `prompt` in the prompt's own form: assistant turns after a message-list prompt,
    plain strings after a plain one."""
    if isinstance(prompt, list):
        return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
