"""Unpaired preference data for KTO: `{"prompt", "completion", "label": true|false}` records, as TRL 1.16 takes them.

Formats: TRL's unpaired preference format, standard (strings) or conversational (message lists), tokenised by
the same rules as pairs (`podium.data.preference.tokenize_pair`: EOS appended to a string completion, the
completion starting where the tokenised prompt and prompt+completion diverge). A file of preference pairs
(`prompt`, `chosen`, `rejected`) is unpaired as `trl.data_utils.unpair_preference_dataset` does it: within each
block of 1000 pairs, every chosen completion (label true) and then every rejected one (label false).

KL completions (KTO's reference point, `podium.losses.kto`): as `trl.KTOTrainer._prepare_dataset`, after the
examples whose prompt alone fills `max_length` are dropped, the completions are rotated by one within each group
of `kl_group` consecutive examples (the per-device batch size): (x_1, y_1) ... (x_n, y_n) get the mismatched
(x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}). With sequential batches (KTO's default, `shuffle: false`) a batch's
KL completions are its own completions under other prompts, as in TRL.

Each example is laid out as a pair, so prefix sharing, padding-free packing and the reference cache apply
unchanged: `prompt_ids`, `chosen_ids` (the completion), `rejected_ids` (its KL completion, or empty without one),
`label` (1.0 desirable, 0.0 undesirable) and `index`. Truncation is TRL's `keep_start`: prompt + completion and
prompt + KL completion are each cut to `max_length` tokens.
"""

from __future__ import annotations

import logging

from podium.data.chat import check_text_or_messages, json_type
from podium.data.mixture import build_mixture
from podium.data.preference import PairStats, _completion_text, tokenize_pair
from podium.errors import DataError

log = logging.getLogger("podium")

UNPAIR_BLOCK = 1000  # rows per block of `datasets.Dataset.map(batched=True)`, which TRL's unpairing uses


def is_paired(row: dict) -> bool:
    return "chosen" in row and "rejected" in row


def unpair(rows: list[dict], block: int = UNPAIR_BLOCK) -> list[dict]:
    """Preference pairs as unpaired records, in TRL's order: per block of `block` pairs, the chosen then the rejected."""
    out = []
    for start in range(0, len(rows), block):
        chunk = rows[start:start + block]
        for label, key in ((True, "chosen"), (False, "rejected")):
            for r in chunk:
                rest = {k: v for k, v in r.items() if k not in ("chosen", "rejected")}
                out.append({**rest, "completion": r[key], "label": label})
    return out


def read_unpaired(data, seed: int = 0, log=None) -> list[dict]:
    """Unpaired records from a JSONL file, a dataset or a mixture (`podium.data.mixture`); pairs are unpaired.

    Errors name the record (file:line for JSONL) and the field: a missing or ill-typed `prompt` / `completion`,
    a `label` that is not true or false, or a file mixing pairs and unpaired records.
    """
    rows, _ = build_mixture(data, seed=seed, shuffle=False, log=log)
    paired = [is_paired(r) for r in rows]
    if any(paired) and not all(paired):
        where = rows[paired.index(not paired[0])].get("_source", "record")
        raise DataError(f"{where}: the data mixes preference pairs (prompt, chosen, rejected) and unpaired records "
                        "(prompt, completion, label); use one format")
    if all(paired):
        for row in rows:
            _check_fields(row, ("prompt", "chosen", "rejected"))
        return unpair(rows)
    for row in rows:
        where = row.get("_source", "record")
        _check_fields(row, ("prompt", "completion"))
        if "label" not in row:
            raise DataError(f"{where}: missing field 'label' (true: a desirable completion, false: an undesirable "
                            "one; TRL's unpaired format is prompt, completion, label)")
        if not isinstance(row["label"], bool):
            raise DataError(f"{where}: field 'label' must be true or false (got {json_type(row['label'])} "
                            f"{row['label']!r})")
    return rows


def _check_fields(row: dict, keys: tuple[str, ...]) -> None:
    where = row.get("_source", "record")
    for key in keys:
        if key not in row:
            raise DataError(f"{where}: missing field {key!r} (need {', '.join(keys)})")
        if not isinstance(row[key], (str, list)):
            raise DataError(f"{where}: field {key!r} must be a string or a list of messages (got {json_type(row[key])})")
        if row[key]:  # an empty completion is dropped and counted, not an error
            check_text_or_messages(row[key], where, key)


def tokenize_unpaired(rows: list[dict], tokenizer, max_length: int | None,
                      kl_group: int | None) -> tuple[list[dict], PairStats]:
    """Tokenise, truncate and lay out unpaired records as pairs (module doc); returns (examples, stats).

    `kl_group`: the group size of the KL rotation (the batch size), or None for no KL completions
    (`apo_zero_unpaired`). Counts are in examples; `stats.as_metrics()` names them `pairs/*` like pairs.
    """
    stats = PairStats(read=len(rows))
    kept = []
    for row in rows:
        if not _completion_text(row["completion"]).strip():
            stats.drop("empty_completion")
            continue
        ex = tokenize_pair({"prompt": row["prompt"], "chosen": row["completion"], "rejected": row["completion"]},
                           tokenizer)
        if max_length is not None and len(ex["prompt_ids"]) >= max_length:
            stats.drop("prompt_too_long")
            continue
        completion = ex["chosen_ids"]
        room = None if max_length is None else max_length - len(ex["prompt_ids"])
        if room is not None and len(completion) > room:
            stats.truncated += 1
        kept.append({"prompt_ids": ex["prompt_ids"], "completion": completion, "room": room,
                     "label": 1.0 if row["label"] else 0.0})
    examples = []
    for start in range(0, len(kept), kl_group or max(len(kept), 1)):
        group = kept[start:start + (kl_group or len(kept))]
        kl = [group[-1]["completion"]] + [g["completion"] for g in group[:-1]] if kl_group else None
        for j, g in enumerate(group):
            room = g["room"]
            examples.append({"prompt_ids": g["prompt_ids"], "chosen_ids": g["completion"][:room],
                             "rejected_ids": kl[j][:room] if kl else [], "label": g["label"],
                             "index": len(examples)})
    stats.kept = len(examples)
    if stats.dropped:
        log.warning("unpaired data: dropped %d of %d examples: %s", sum(stats.dropped.values()), stats.read,
                    ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items())))
    desirable = sum(ex["label"] for ex in examples)
    log.info("unpaired data: %d examples, %d desirable, %d undesirable", len(examples), int(desirable),
             len(examples) - int(desirable))
    return examples, stats
