"""Sources that rank several responses, read as SFT records, preference pairs or prompts.

- `shp` (stanfordnlp/SHP): a Reddit post (`history`) with two comments `human_ref_A`/`human_ref_B`;
  `labels` is 1 when A is preferred (the card: the comment with the higher score, written later), so the
  preferred comment is SFT's completion and a pair's `chosen`; `score_A`/`score_B` decide when `labels`
  is missing and travel with the pair as `score_chosen`/`score_rejected`.
- `stack_exchange` (HuggingFaceH4/stack-exchange-preferences): a `question` and `answers: [{text,
  pm_score, selected, ...}]`. SFT takes the answer with the highest `pm_score` (ties: the accepted one,
  then the first); a pair is that answer against a seeded random answer with a lower `pm_score`, the
  binarisation HuggingFaceH4/ultrafeedback_binarized describes (best vs one of the rest at random).
- `ultrafeedback` (openbmb/UltraFeedback): an `instruction` and four `completions: [{response,
  annotations: {helpfulness, honesty, instruction_following, truthfulness: {Rating, ...}}, ...}]`.
  As HuggingFaceH4/ultrafeedback_binarized was built (its card): the completion with the highest mean
  rating is chosen, one of the remaining three at random is rejected, and prompts sourced from
  TruthfulQA are left out (the card's fix for leaderboard contamination). A rating "N/A" is left out
  of the mean; a completion without annotations falls back to `fine-grained_score`, then
  `overall_score`. Departure: a pair whose two ratings tie carries no preference and is skipped
  (counted as "tie"), where the published set keeps such rows.

The random choice is seeded by (source seed, row index), so a row gives the same pair in every draw.
"""

from __future__ import annotations

import random

from podium.data.fields import FieldError, get_field
from podium.data.source_row import Format, ReadSettings, SkipRow, SourceRow, with_system

ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
ULTRAFEEDBACK_EXCLUDED_SOURCES = ("truthful_qa",)


def row_rng(s: ReadSettings) -> random.Random:
    return random.Random(f"{s.seed}:{s.index}")


def response(text: str, s: ReadSettings):
    return [{"role": "assistant", "content": text}] if s.chat_template else text


def ranked_record(prompt, best: str, other: str | None, use: str, s: ReadSettings, scores=None) -> dict:
    if use == "sft":
        return {"prompt": prompt, "completion": response(best, s)}
    record = {"prompt": prompt, "chosen": response(best, s), "rejected": response(other, s)}
    if scores is not None:
        record["score_chosen"], record["score_rejected"] = scores
    return record


def read_shp(row: SourceRow, use: str, s: ReadSettings) -> dict:
    prompt = with_system(row, row.text("prompt", what="post"))
    if use == "prompts":
        return {"prompt": prompt}
    a, b = row.text("response_a", what="comment A"), row.text("response_b", what="comment B")
    score_a, score_b = row.number("score_a", optional=True), row.number("score_b", optional=True)
    label = row.number("label", optional=True)
    if label is None:
        if score_a is None or score_b is None:
            raise row.error(f"neither {row.path('label')!r} nor both scores say which comment is preferred")
        if score_a == score_b:
            raise SkipRow("tie")
        label = float(score_a > score_b)
    if label not in (0.0, 1.0):
        raise row.error(f"field {row.path('label')!r} must be 1 (A preferred) or 0 (B preferred), got {label!r}")
    best, other = (a, b) if label == 1.0 else (b, a)
    scores = (score_a, score_b) if label == 1.0 else (score_b, score_a)
    return ranked_record(prompt, best, other, use, s, scores if None not in scores else None)


def _answer_field(row: SourceRow, answer, role: str, i: int):
    try:
        return get_field(answer, row.path(role))
    except FieldError as e:
        raise row.error(f"{row.path('answers')}[{i}]: {e}") from None


def read_stack_exchange(row: SourceRow, use: str, s: ReadSettings) -> dict:
    prompt = with_system(row, row.text("prompt", what="question"))
    if use == "prompts":
        return {"prompt": prompt}
    answers = []
    for i, answer in enumerate(row.items("answers")):
        text = _answer_field(row, answer, "text", i)
        score = _answer_field(row, answer, "score", i)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise row.error(f"{row.path('answers')}[{i}].{row.path('score')} must be a number (got {score!r:.30})")
        selected = bool(get_field(answer, row.path("selected"))) if row.path("selected") in answer else False
        if isinstance(text, str) and text.strip():
            answers.append((score, selected, -i, text))
    if not answers:
        raise SkipRow("no non-empty answer")
    best = max(answers)
    if use == "sft":
        return ranked_record(prompt, best[3], None, use, s)
    lower = [a for a in answers if a[0] < best[0]]
    if not lower:
        raise SkipRow("no lower-scored answer")
    other = row_rng(s).choice(lower)
    return ranked_record(prompt, best[3], other[3], use, s, (float(best[0]), float(other[0])))


def ultrafeedback_score(completion: dict) -> float | None:
    """Mean of the four aspect ratings ("N/A" left out); else `fine-grained_score`, else `overall_score`."""
    ratings = []
    annotations = completion.get("annotations")
    for aspect in annotations.values() if isinstance(annotations, dict) else []:
        aspect = aspect[0] if isinstance(aspect, list) and aspect else aspect  # the GitHub release wraps each in a list
        rating = aspect.get("Rating") if isinstance(aspect, dict) else None
        try:
            ratings.append(float(rating))
        except (TypeError, ValueError):
            continue  # "N/A" or absent
    if ratings:
        return sum(ratings) / len(ratings)
    for key in ("fine-grained_score", "overall_score"):
        if isinstance(completion.get(key), (int, float)):
            return float(completion[key])
    return None


def read_ultrafeedback(row: SourceRow, use: str, s: ReadSettings) -> dict:
    prompt = with_system(row, row.text("prompt", what="instruction"))
    if use == "prompts":
        return {"prompt": prompt}
    source = row.get("source", optional=True)
    if source in ULTRAFEEDBACK_EXCLUDED_SOURCES:
        raise SkipRow(f"{source} prompt (left out of the binarised set)")
    scored = []
    for i, completion in enumerate(row.items("completions")):
        if not isinstance(completion, dict):
            raise row.error(f"{row.path('completions')}[{i}] must be a mapping with {row.path('response')!r}")
        text = _answer_field(row, completion, "response", i)
        score = ultrafeedback_score(completion)
        if isinstance(text, str) and text.strip() and score is not None:
            scored.append((score, -i, text))
    if not scored:
        raise SkipRow("no rated non-empty completion")
    best = max(scored)
    if use == "sft":
        return ranked_record(prompt, best[2], None, use, s)
    rest = [c for c in scored if c is not best]
    if not rest:
        raise SkipRow("one rated completion")
    other = row_rng(s).choice(rest)
    if other[0] == best[0]:
        raise SkipRow("tie")
    return ranked_record(prompt, best[2], other[2], use, s, (best[0], other[0]))


RANKED: dict[str, Format] = {
    "shp": Format("shp", {"prompt": "history", "response_a": "human_ref_A", "response_b": "human_ref_B",
                          "label": "labels", "score_a": "score_A", "score_b": "score_B"}, read_shp),
    "stack_exchange": Format("stack_exchange", {"prompt": "question", "answers": "answers", "text": "text",
                                                "score": "pm_score", "selected": "selected"}, read_stack_exchange),
    "ultrafeedback": Format("ultrafeedback", {"prompt": "instruction", "completions": "completions",
                                              "response": "response", "source": "source"}, read_ultrafeedback),
}
