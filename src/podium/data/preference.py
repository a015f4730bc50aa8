"""Preference pairs: read `{"prompt", "chosen", "rejected"}` records and tokenise them as TRL 1.16 does.

Formats (TRL's names):
- standard: `prompt`, `chosen`, `rejected` are strings. The tokenizer's EOS is appended to each
  completion (unless it already ends with it).
- conversational: they are message lists; the prompt is rendered with the chat template and
  `add_generation_prompt=True`, prompt+completion with the template alone. A record that mixes
  the two (a string prompt with message-list completions, or the reverse) is conversational: a
  string prompt becomes one user message, a string completion one assistant message.

In both, the completion starts where the tokenised prompt and the tokenised prompt+completion
diverge (`common_prefix_len`, as `trl.DPOTrainer._prepare_dataset`).

Truncation is TRL's `keep_start`: each prompt+completion sequence is cut to `max_length` tokens
from the end, i.e. the completion loses its tail; pairs whose prompt alone has `>= max_length`
tokens are dropped (TRL drops them too). Invalid pairs are dropped and counted in `PairStats`,
never silently: chosen equal to rejected, an empty completion, a prompt too long.

Optional numeric fields are kept: `chosen_prob`, `rejected_prob`, `pair_prob` (SPPO targets),
`chosen_score`, `rejected_score` (GPO) and `score`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from podium.data.chat import as_messages, check_text_or_messages, common_prefix_len, json_type
from podium.data.mixture import build_mixture
from podium.errors import DataError

log = logging.getLogger("podium")

FLOAT_FIELDS = ("chosen_prob", "rejected_prob", "pair_prob", "chosen_score", "rejected_score", "score")


@dataclass
class PairStats:
    """How many records were read, kept and dropped (by reason)."""

    read: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def as_metrics(self) -> dict[str, float]:
        out = {"pairs/read": float(self.read), "pairs/kept": float(self.kept),
               "pairs/truncated": float(self.truncated)}
        out.update({f"pairs/dropped/{k}": float(v) for k, v in sorted(self.dropped.items())})
        return out


def read_pairs(data, seed: int = 0, log=None, skipped: dict | None = None) -> list[dict]:
    """Preference records from a JSONL file, a dataset or a mixture with per-source counts and formats
    (`podium.data.mixture`, `podium.data.formats`); errors name file, line and field."""
    rows, _ = build_mixture(data, seed=seed, shuffle=False, log=log, use="pairs", skipped=skipped)
    for row in rows:
        where = row.get("_source", "record")
        for key in ("prompt", "chosen", "rejected"):
            if key not in row:
                raise DataError(f"{where}: missing field {key!r} (need prompt, chosen, rejected)")
            if not isinstance(row[key], (str, list)):
                raise DataError(f"{where}: field {key!r} must be a string or a list of messages "
                                f"(got {json_type(row[key])})")
            if row[key]:  # an empty completion is dropped and counted below, not an error
                check_text_or_messages(row[key], where, key)
        for key in FLOAT_FIELDS:
            if key in row and row[key] is not None and not isinstance(row[key], (int, float)):
                raise DataError(f"{where}: field {key!r} must be a number (got {json_type(row[key])})")
    return rows


def is_conversational(row: dict) -> bool:
    return any(isinstance(row[k], list) for k in ("prompt", "chosen", "rejected"))


def _completion_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(str(m.get("content", "")) for m in value)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


def tokenize_pair(row: dict, tokenizer) -> dict:
    """Token ids of one pair: `prompt_ids`, `chosen_ids`, `rejected_ids` (TRL 1.16 rules, untruncated)."""
    if is_conversational(row):
        def render(messages, **kw):
            try:
                out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)
            except MemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - the template refuses the record's messages (roles, emptiness)
                raise DataError(f"{row.get('_source', 'record')}: the tokenizer's chat template cannot render this "
                                f"pair ({type(e).__name__}: {_first_line(e)})") from None
            return list(out["input_ids"])

        prompt = as_messages(row["prompt"], "user")
        prompt_ids = render(prompt, add_generation_prompt=True)
        pc = render(prompt + as_messages(row["chosen"], "assistant"))
        pr = render(prompt + as_messages(row["rejected"], "assistant"))
    else:
        eos = tokenizer.eos_token
        chosen = row["chosen"] if row["chosen"].endswith(eos) else row["chosen"] + eos
        rejected = row["rejected"] if row["rejected"].endswith(eos) else row["rejected"] + eos
        prompt_ids = list(tokenizer(row["prompt"])["input_ids"])
        pc = list(tokenizer(row["prompt"] + chosen)["input_ids"])
        pr = list(tokenizer(row["prompt"] + rejected)["input_ids"])
    n = min(common_prefix_len(prompt_ids, pc), common_prefix_len(prompt_ids, pr))
    return {"prompt_ids": prompt_ids[:n], "chosen_ids": pc[n:], "rejected_ids": pr[n:]}


def tokenize_pairs(rows: list[dict], tokenizer, max_length: int | None) -> tuple[list[dict], PairStats]:
    """Tokenise, truncate (`keep_start`) and validate pairs; returns (examples, stats).

    Each example: `index` (position among kept pairs), `prompt_ids`, `chosen_ids`, `rejected_ids`,
    and the optional float fields of the record.
    """
    stats = PairStats(read=len(rows))
    examples = []
    for row in rows:
        if row["chosen"] == row["rejected"]:
            stats.drop("chosen_equals_rejected")
            continue
        if not _completion_text(row["chosen"]).strip() or not _completion_text(row["rejected"]).strip():
            stats.drop("empty_completion")
            continue
        ex = tokenize_pair(row, tokenizer)
        if max_length is not None:
            if len(ex["prompt_ids"]) >= max_length:
                stats.drop("prompt_too_long")
                continue
            room = max_length - len(ex["prompt_ids"])
            if len(ex["chosen_ids"]) > room or len(ex["rejected_ids"]) > room:
                stats.truncated += 1
            ex["chosen_ids"] = ex["chosen_ids"][:room]
            ex["rejected_ids"] = ex["rejected_ids"][:room]
        if not ex["chosen_ids"] or not ex["rejected_ids"]:
            stats.drop("empty_completion")
            continue
        if ex["chosen_ids"] == ex["rejected_ids"]:
            # Different text that tokenises (or truncates) to the same ids carries no preference signal.
            stats.drop("chosen_equals_rejected")
            continue
        for key in FLOAT_FIELDS:
            if row.get(key) is not None:
                ex[key] = float(row[key])
        ex["index"] = len(examples)
        examples.append(ex)
    stats.kept = len(examples)
    if stats.dropped:
        log.warning("preference data: dropped %d of %d pairs: %s", sum(stats.dropped.values()), stats.read,
                    ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items())))
    if stats.truncated:
        log.info("preference data: %d pairs truncated to max_length=%s (keep_start)", stats.truncated, max_length)
    return examples, stats
