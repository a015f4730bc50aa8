"""Stage `pairs`: preference pairs built from a dataset, as for Smaug's DPOP data.

Builders (Pal et al., 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive"):
- `corrupt_number`: a worked answer is `chosen`; the same answer with one number changed
  is `rejected` (MetaMath-style pairs with a small edit distance).
- `multiple_choice`: the correct option is `chosen`, each wrong option a `rejected`
  (ARC / HellaSwag-style pairs).
- `task`: gold worked answers of a built-in task, corrupted as above (offline toy data).
Sources are a mixture (`data`), like SFT data, read as published; `*_field` settings are field
paths (podium.data.fields), so ARC's `choices: {text: [...], label: [...]}` is read with
`choices_field: choices.text` and `labels_field: choices.label` (some ARC rows are labelled 1-4).
A multiple-choice prompt lists its options ("A. text" lines) under the question, so a response that
names a label ("The answer is B") refers to something the model was shown.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from podium.config import invalid
from podium.data.fields import FieldError, get_field, path_problem
from podium.data.mixture import Mixture, build_mixture
from podium.data.rendering import PLAIN_KEY, is_plain
from podium.errors import DataError
from podium.files import write_json, write_jsonl
from podium.pairs.dpop import multiple_choice_pairs, number_corruption_pair
from podium.stages import StageConfig, StageContext, stage
from podium.tasks import get_task


class PairsConfig(StageConfig):
    data: Mixture = Field(description="a dataset or a mixture with per-source counts")
    builder: Literal["corrupt_number", "multiple_choice"] = "corrupt_number"
    prompt_field: str = Field("prompt", description="field path of the question")
    answer_field: str = Field("response", description="worked answer (corrupt_number), or the correct option's "
                              "label, index or text (multiple_choice)")
    choices_field: str = Field("choices", description="the options (multiple_choice), e.g. choices.text (ARC)")
    labels_field: str | None = Field(None, description="the options' labels, e.g. choices.label (ARC); default A, B, C")
    options_in_prompt: bool = Field(True, description="multiple_choice: list the options under the question")
    template: str = Field("{text}", description="multiple_choice response, e.g. 'The answer is {label}. {text}'")
    exclude_final: bool = Field(False, description="corrupt an intermediate number, not the final answer")
    seed: int = 0

    @model_validator(mode="after")
    def _paths(self):
        for key in ("prompt_field", "answer_field", "choices_field", "labels_field"):
            if getattr(self, key) is not None and (problem := path_problem(getattr(self, key))):
                raise invalid((key,), problem, getattr(self, key))
        return self


def field(row: dict, path: str, where: str):
    try:
        return get_field(row, path)
    except FieldError as e:
        raise DataError(f"{where}: {e}") from None


def options_prompt(question: str, labels: list[str], choices: list[str]) -> str:
    """The question with its options under it, one "LABEL. text" line each."""
    return question + "\n\n" + "\n".join(f"{label}. {text}" for label, text in zip(labels, choices))


def record_pairs(row: dict, i: int, cfg: PairsConfig) -> list[dict]:
    where = row.get("_source", f"row {i}")
    messages = None
    if "task" in row and "answer" in row and cfg.answer_field not in row:
        # A built-in task item: its taught worked answer is the chosen response. The pair keeps the
        # item's chat prompt, so it is rendered with the chat template the model was fine-tuned on.
        messages = row["prompt"] if isinstance(row["prompt"], list) else None
        prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
        answer = get_task(row["task"]).format_answer({"prompt": prompt, "answer": row["answer"]})
    else:
        prompt, answer = field(row, cfg.prompt_field, where), field(row, cfg.answer_field, where)
    if cfg.builder == "corrupt_number":
        pair = number_corruption_pair(prompt, str(answer), seed=cfg.seed * 1_000_003 + i,
                                      exclude_final=cfg.exclude_final)
        if pair and messages is not None:
            pair["prompt"] = messages
        return [pair] if pair else []
    choices = field(row, cfg.choices_field, where)
    labels = field(row, cfg.labels_field, where) if cfg.labels_field else None
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: field {cfg.choices_field!r} must be a list of strings (got {choices!r:.80}); "
                        "a field path reaches nested options, e.g. choices.text")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(choices)):
        raise DataError(f"{where}: field {cfg.labels_field!r} must list one label per option ({len(choices)}), "
                        f"got {labels!r:.80}")
    labels = [str(label) for label in labels] if labels is not None else None
    if cfg.options_in_prompt and isinstance(prompt, str):
        prompt = options_prompt(prompt, labels or [chr(ord("A") + i) for i in range(len(choices))], choices)
    try:
        return multiple_choice_pairs(prompt, choices, answer, labels=labels, template=cfg.template)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None


def conversational(pair: dict) -> dict:
    """A message-list prompt gets message-list responses (TRL's conversational format)."""
    if isinstance(pair["prompt"], list):
        for key in ("chosen", "rejected"):
            if isinstance(pair[key], str):
                pair[key] = [{"role": "assistant", "content": pair[key]}]
    return pair


@stage("pairs", PairsConfig, outputs={"pairs": "pairs.jsonl"})
def pairs(cfg: PairsConfig, ctx: StageContext) -> dict:
    """Smaug-style DPOP pairs: one corrupted number, or correct vs each wrong option."""
    rows, counts = build_mixture(cfg.data, seed=cfg.seed, log=ctx.log)
    out, skipped = [], 0
    for i, row in enumerate(rows):
        built = record_pairs(row, i, cfg)
        skipped += not built
        plain = {PLAIN_KEY: False} if is_plain(row) else {}  # the source opted out of the chat template
        out.extend(conversational(dict(p, source=cfg.builder, **plain)) for p in built)
    if not out:
        raise DataError(f"no pairs built from {len(rows)} rows (builder {cfg.builder})")
    write_jsonl(ctx.out_dir / "pairs.jsonl", out)
    write_json(ctx.out_dir / "counts.json", {"sources": counts, "rows": len(rows), "pairs": len(out),
                                              "rows_without_pair": skipped})
    return {"rows": len(rows), "pairs": len(out), "rows_without_pair": skipped}
