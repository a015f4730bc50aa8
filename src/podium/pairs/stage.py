"""Stage `pairs`: preference pairs built from a dataset, as for Smaug's DPOP data.

Builders (Pal et al., 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive"):
- `corrupt_number`: a worked answer is `chosen`; the same answer with one number changed
  is `rejected` (MetaMath-style pairs with a small edit distance).
- `multiple_choice`: the correct option is `chosen`, each wrong option a `rejected`
  (ARC / HellaSwag-style pairs).
- `task`: gold worked answers of a built-in task, corrupted as above (offline toy data).
Sources are a mixture (`data`), like SFT data; `columns` maps other field names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from podium.data.mixture import Mixture, build_mixture
from podium.data.records import write_json, write_jsonl
from podium.errors import DataError
from podium.pairs.dpop import multiple_choice_pairs, number_corruption_pair
from podium.stages import StageConfig, StageContext, stage
from podium.tasks import get_task


class PairsConfig(StageConfig):
    data: Mixture = Field(description="a dataset or a mixture with per-source counts")
    builder: Literal["corrupt_number", "multiple_choice"] = "corrupt_number"
    prompt_field: str = "prompt"
    answer_field: str = Field("response", description="worked answer (corrupt_number) or correct option")
    choices_field: str = Field("choices", description="list of options (multiple_choice)")
    template: str = Field("{text}", description="multiple_choice response, e.g. 'The answer is {label}. {text}'")
    exclude_final: bool = Field(False, description="corrupt an intermediate number, not the final answer")
    seed: int = 0


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
        for f in (cfg.prompt_field, cfg.answer_field):
            if f not in row:
                raise DataError(f"{where}: missing field {f!r}")
        prompt, answer = row[cfg.prompt_field], row[cfg.answer_field]
    if cfg.builder == "corrupt_number":
        pair = number_corruption_pair(prompt, str(answer), seed=cfg.seed * 1_000_003 + i,
                                      exclude_final=cfg.exclude_final)
        if pair and messages is not None:
            pair["prompt"] = messages
        return [pair] if pair else []
    if cfg.choices_field not in row:
        raise DataError(f"{where}: missing field {cfg.choices_field!r}")
    try:
        return multiple_choice_pairs(prompt, row[cfg.choices_field], answer, template=cfg.template)
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
        out.extend(conversational(dict(p, source=cfg.builder)) for p in built)
    if not out:
        raise DataError(f"no pairs built from {len(rows)} rows (builder {cfg.builder})")
    write_jsonl(ctx.out_dir / "pairs.jsonl", out)
    write_json(ctx.out_dir / "counts.json", {"sources": counts, "rows": len(rows), "pairs": len(out),
                                              "rows_without_pair": skipped})
    return {"rows": len(rows), "pairs": len(out), "rows_without_pair": skipped}
