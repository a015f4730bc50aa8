"""Source formats by name: a published row -> the record a stage reads (SFT, preference pair or prompt).

The conventions users know (LLaMA-Factory's `dataset_info`, TRL's standard and conversational
formats, OpenAI messages), set per source with `format:`:

| format | published row | SFT | pairs | prompts |
|---|---|---|---|---|
| `auto` | TRL's records: `messages`, or `prompt` + `completion`, or `prompt` + `chosen` + `rejected` | yes | yes | yes |
| `messages` | OpenAI `messages: [{role, content}]` | the conversation | - | turns up to the last user turn |
| `sharegpt` | `conversations: [{from: system/human/gpt, value}]` | the conversation | - | as messages |
| `alpaca` | `instruction`, optional `input`, `output` | instruction + input -> output | - | instruction + input |
| `preference` | `prompt`, `chosen`, `rejected`, optional `system` | prompt -> chosen | the pair | prompt |
| `shp` | SHP's `history`, `human_ref_A/B`, `labels`, `score_A/B` | the preferred comment | preferred vs other | history |
| `stack_exchange` | `question`, `answers: [{text, pm_score, selected}]` | top answer | top vs a lower-scored one | question |
| `ultrafeedback` | `instruction`, `completions: [{response, annotations}]` | best-rated | binarised as H4's | instruction |

`columns: {ROLE: FIELD_PATH}` moves a role to another field (`choices.text`, `answers[*].text`,
`chatgpt_answers[0]`); every format also reads an optional `system` role (a system prompt kept as the
first turn). A row the format cannot read is a `DataError` naming source, row and field; a row with an
empty or null value is skipped and counted (`podium.data.source_row.SkipRow`). With `chat_template:
false` the record is plain text (podium.data.rendering), Alpaca rows in the Alpaca authors' template.
"""

from __future__ import annotations

import re

from podium.data.rankings import RANKED
from podium.data.rendering import PLAIN_KEY, plain_text
from podium.data.source_row import Format, ReadSettings, SkipRow, SourceRow, with_system
from podium.errors import DataError

# Fields a TRL record carries besides its text that later stages read: gold answers, SPPO/GPO targets, provenance.
PASSTHROUGH = ("answer", "task", "reference", "chosen_prob", "rejected_prob", "pair_prob", "chosen_score",
               "rejected_score", "score", "source", PLAIN_KEY)
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "bot": "assistant", "chatgpt": "assistant"}
MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
# Stanford Alpaca's prompt templates (tatsu-lab/stanford_alpaca, train.py), for plain-text rendering.
ALPACA_PLAIN = {
    True: ("Below is an instruction that describes a task, paired with an input that provides further context. "
           "Write a response that appropriately completes the request.\n\n"
           "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"),
    False: ("Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"),
}
ALPACA_JOIN = "\n\n"  # instruction and input in one user turn, in the order and spacing of the Alpaca template


def split_conversation(turns: list[dict], row: SourceRow, use: str) -> dict:
    """A conversation as an SFT record (every assistant turn trained) or a prompt (turns to the last user turn)."""
    if use == "prompts":
        last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
        if last_user is None:
            raise SkipRow("no user turn")
        return {"prompt": turns[: last_user + 1]}
    if use == "pairs":
        raise row.error("a conversation holds no preference pair; use `format: preference` (or shp, stack_exchange, "
                        "ultrafeedback) for pairs")
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        raise SkipRow("no assistant turn")
    return {"messages": turns[: last + 1]}


def read_turns(row: SourceRow, use: str, s: ReadSettings, role_key: str, content_key: str,
               roles: dict[str, str]) -> dict:
    """`messages` / `sharegpt`: a list of turns with configurable role and content keys and role names."""
    raw = row.items("messages")
    turns = []
    for i, turn in enumerate(raw):
        here = f"{row.path('messages')}[{i}]"
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            keys = ", ".join(turn) if isinstance(turn, dict) else type(turn).__name__
            raise row.error(f"{here} needs {role_key!r} and {content_key!r} (it has {keys}); set `role_key:` / "
                            "`content_key:` for other names")
        name, content = turn[role_key], turn[content_key]
        if name not in roles:
            raise row.error(f"{here}: role {name!r} is not mapped (known: {', '.join(roles)}); add it to `roles:`")
        role = roles[name]
        if content is not None and not isinstance(content, str):
            raise row.error(f"{here}.{content_key} must be a string (got {type(content).__name__})")
        if not (content or "").strip():
            if role == "system":
                continue  # an empty system prompt is no system prompt
            raise SkipRow(f"empty {role} turn")
        turns.append({"role": role, "content": content})
    if not turns:
        raise SkipRow(f"empty {row.path('messages')}")
    return split_conversation(with_system(row, turns), row, use)


def read_sharegpt(row: SourceRow, use: str, s: ReadSettings) -> dict:
    return read_turns(row, use, s, s.role_key or "from", s.content_key or "value", {**SHAREGPT_ROLES, **(s.roles or {})})


def read_messages(row: SourceRow, use: str, s: ReadSettings) -> dict:
    return read_turns(row, use, s, s.role_key or "role", s.content_key or "content", {**MESSAGE_ROLES, **(s.roles or {})})


def read_alpaca(row: SourceRow, use: str, s: ReadSettings) -> dict:
    """Instruction + optional input (one user turn, joined as the Alpaca template orders them) -> output."""
    instruction = row.text("instruction")
    extra = row.text("input", optional=True)
    if not s.chat_template:
        system = row.text("system", optional=True)
        prompt = ALPACA_PLAIN[bool(extra)].format(instruction=instruction, input=extra or "")
        if system:
            prompt = system + "\n\n" + prompt.split("\n\n", 1)[1]
    else:
        prompt = with_system(row, [{"role": "user", "content": instruction + (ALPACA_JOIN + extra if extra else "")}])
    if use == "prompts":
        return {"prompt": prompt}
    if use == "pairs":
        raise row.error("an Alpaca row holds no preference pair; use `format: preference` for pairs")
    output = row.text("output", what="output")
    return {"prompt": prompt, "completion": output if not s.chat_template else [{"role": "assistant", "content": output}]}


def read_preference(row: SourceRow, use: str, s: ReadSettings) -> dict:
    """prompt / chosen / rejected (strings or message lists) with an optional system prompt.

    Full conversations in `chosen` and `rejected` (HuggingFaceH4/ultrafeedback_binarized keeps the user turn in
    both) are split as TRL's `extract_prompt` splits them: the leading turns both share become the prompt.
    """
    if use == "prompts":
        return {"prompt": with_system(row, row.text_or_messages("prompt"))}
    chosen = row.text_or_messages("chosen", allow_empty=use == "pairs")
    rejected = row.text_or_messages("rejected", allow_empty=True) if use == "pairs" else None
    prompt = row.text_or_messages("prompt", optional=True)
    if isinstance(chosen, list) and (rejected is None or isinstance(rejected, list)):
        if shared := shared_prompt_turns(chosen, rejected):
            prompt, chosen = chosen[:shared], chosen[shared:]
            rejected = rejected[shared:] if rejected is not None else None
    if prompt is None:
        raise row.error(f"missing field {row.path('prompt')!r} (and chosen/rejected share no prompt turns)")
    out = {"prompt": with_system(row, prompt)}
    if use == "sft":
        return {**out, "completion": chosen}
    return {**out, "chosen": chosen, "rejected": rejected}


def shared_prompt_turns(chosen: list[dict], rejected: list[dict] | None) -> int:
    """How many leading non-assistant turns `chosen` (and `rejected`, when given) share before their responses."""
    n = 0
    while (n < len(chosen) - 1 and chosen[n]["role"] != "assistant"
           and (rejected is None or (n < len(rejected) - 1 and rejected[n] == chosen[n]))):
        n += 1
    return n


def read_auto(row: SourceRow, use: str, s: ReadSettings) -> dict:
    """TRL's standard and conversational records as they are, plus the fields later stages read (PASSTHROUGH)."""
    raw = row.row
    keep = {k: raw[k] for k in PASSTHROUGH if k in raw and k not in row.paths}
    keep.update({k: row.get(k) for k in PASSTHROUGH if k in row.paths})
    has = {k: k in row.paths or k in raw for k in ("messages", "prompt", "completion", "chosen", "rejected")}
    if use == "pairs" or (use == "sft" and has["chosen"] and not has["completion"] and not has["messages"]):
        if not (has["prompt"] or has["chosen"]) or not has["chosen"] or (use == "pairs" and not has["rejected"]):
            raise row.error(f"missing field {next(k for k in ('prompt', 'chosen', 'rejected') if not has[k])!r} "
                            f"(need prompt, chosen, rejected){hint(raw)}")
        if use == "sft":
            raise row.error(f"a preference record for SFT: set `format: preference` to train on `chosen`{hint(raw)}")
        return {**keep, **read_preference(row, use, s)}
    if has["messages"]:
        turns = row.text_or_messages("messages")
        if not isinstance(turns, list):
            raise row.error(f"field {row.path('messages')!r} must be a list of {{role, content}} messages")
        return {**keep, **split_conversation(with_system(row, turns), row, use)}
    if use == "prompts":
        if not has["prompt"]:
            raise row.error(f"missing field 'prompt'{hint(raw)}")
        return {**keep, "prompt": with_system(row, row.text_or_messages("prompt"))}
    if not (has["prompt"] and has["completion"]):
        raise row.error(f"expected 'messages' or 'prompt' and 'completion' fields{hint(raw)}")
    prompt, completion = row.text_or_messages("prompt"), row.text_or_messages("completion")
    return {**keep, "prompt": with_system(row, prompt), "completion": completion}


def hint(raw: dict) -> str:
    """A pointer to the format a row looks like, for the error of a row `auto` cannot read."""
    keys = set(raw)
    guesses = [("conversations", "sharegpt"), ("instruction", "alpaca"), ("human_ref_A", "shp"),
               ("answers", "stack_exchange"), ("completions", "ultrafeedback")]
    for key, name in guesses:
        if key in keys:
            return f"; the row looks like `format: {name}`"
    shown = ", ".join(sorted(k for k in keys if not k.startswith("_"))[:10])
    return f"; the row has {shown or 'no fields'}: map them with `columns:` or set `format:`"


FORMATS: dict[str, Format] = {
    "auto": Format("auto", {}, read_auto),
    "messages": Format("messages", {"messages": "messages"}, read_messages),
    "sharegpt": Format("sharegpt", {"messages": "conversations"}, read_sharegpt),
    "alpaca": Format("alpaca", {"instruction": "instruction", "input": "input", "output": "output"}, read_alpaca,
                     optional=("system", "input")),
    "preference": Format("preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}, read_preference),
    **RANKED,
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DataError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def column_problems(format_name: str, columns: dict | None) -> list[tuple[str, str]]:
    """(column role, message) for roles the format does not read (a typo such as `promt`). `auto` takes any name:
    its columns add fields to the row (`{prompt: instruction}`), as pair builders read them."""
    try:
        fmt = get_format(format_name)
    except DataError as e:
        return [("", str(e))]
    if fmt.name == "auto":
        return []
    known = {*fmt.roles, *fmt.optional}
    return [(role, f"format {format_name!r} has no column {role!r}; it reads {', '.join(sorted(known))}")
            for role in (columns or {}) if role not in known]


def extract_gold(value, pattern: str | None, path: str) -> str:
    """The gold answer inside a worked solution: group 1 of `pattern` (or its whole match), stripped."""
    if not isinstance(value, str) or not value.strip():
        raise SkipRow(f"empty gold answer ({path})")
    if pattern is None:
        return value.strip()
    m = re.search(pattern, value, flags=re.MULTILINE)
    if m is None:
        raise SkipRow(f"no gold answer matching {pattern!r} in {path}")
    return (m.group(1) if m.groups() else m.group(0)).strip()


def as_plain(record: dict) -> dict:
    """A record rendered as plain text (chat_template: false): turns flattened, marked so later stages keep it so."""
    out = dict(record)
    if "messages" in out:
        turns = out.pop("messages")
        last = max(i for i, t in enumerate(turns) if t["role"] == "assistant")
        out["prompt"], out["completion"] = plain_text(turns[:last], prompt=True), turns[last]["content"]
    for key in ("prompt", "completion", "chosen", "rejected"):
        if isinstance(out.get(key), list):
            out[key] = plain_text(out[key], prompt=key == "prompt")
    out[PLAIN_KEY] = False
    return out


def read_row(raw: dict, use: str, fmt: Format, paths: dict[str, str], settings: ReadSettings, where: str,
             gold=None) -> dict:
    """One published row -> the record `use` needs; SkipRow for rows with nothing to train on, DataError otherwise."""
    row = SourceRow(raw, {**fmt.roles, **paths}, where, fmt.name)
    record = fmt.read(row, use, settings)
    if gold is not None and use == "prompts":
        value = SourceRow(raw, {"gold": gold.field}, where, fmt.name).get("gold")
        record["answer"] = extract_gold(value, gold.pattern, gold.field)
        record["task"] = gold.checker
        record["reference"] = value.strip()
    if not settings.chat_template:
        record = as_plain(record)
    return record
