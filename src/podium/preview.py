"""`podium preview RECIPE.yaml STAGE`: the first rows of each source of a stage, exactly as training sees them.

Each source's first `rows` rows are read with its format (podium.data.formats), rendered by the one
rendering rule (podium.data.rendering) with the stage model's tokenizer, and tokenised as the stage
tokenises them (its max_length included). One entry a row, with `source` and `row`:

- SFT sources (`sft`): `text`, the full rendered text, and `trained`, the text of the tokens in the
  loss; `spans` splits `text` into [piece, trained] runs for display.
- preference sources (`train`) and pair builders (`pairs`): the rendered `prompt`, `chosen` and
  `rejected`. A builder's pairs are rendered with the tokenizer of the stage that trains on them; its
  random choices (which number is corrupted) may differ from the run's, which numbers rows after the draw.
- prompt sources (`sgd`, `selfplay`, `eval`, `generate`): the rendered `prompt` (generation prompt
  included), and the gold `answer` and `reference` when the source has them.

A row the format skips (an empty answer, a tie) comes back with `skipped` and its reason. The tokenizer
is the stage model's, followed back through earlier stages to a folder, a Hub id or the embedded tiny
model; `model=` previews with another one (a local folder, when the Hub is out of reach).
"""

from __future__ import annotations

from pathlib import Path

from podium.data.chat import IGNORE, prompt_text, tokenize_sft, truncate_sft
from podium.data.loaders import open_source, stream_head
from podium.data.mixture import DataSource, as_sources, load_source, read_source_rows
from podium.data.preference import tokenize_pairs
from podium.data.rendering import chat_prompt, chat_record
from podium.data.stage_sources import (
    STAGE_SOURCES,
    StageView,
    load_origin_tokenizer,
    producer,
    setting,
    stage_sources,
    tokenizer_origin,
)
from podium.errors import DataError, PodiumError
from podium.models.io import load_tokenizer
from podium.pairs.stage import conversational, record_pairs
from podium.planning import make_plan


def read_head(src: DataSource, use: str | None, rows: int, views: list[StageView]) -> list[dict]:
    """The first `rows` rows of a source read for `use`; a skipped row as {"_source", "skipped": reason}."""
    if src.path and not Path(src.path).exists() and (earlier := producer(views, src.path)) is not None:
        return [{"_source": src.path, "skipped": f"the output of stage {earlier.name!r}, not written yet (preview that "
                 "stage to see its rows)"}]
    if src.task is not None:
        return load_source(src.model_copy(update={"count": rows}), seed=0, use=use)
    if Path(src.path).exists():
        head = list(open_source(src.path, src.split, src.name, src.revision, src.data_files).head(rows))
    else:
        try:
            head = list(enumerate(stream_head(src.path, src.split, src.name, src.revision, src.data_files, rows)))
        except DataError as e:  # out of reach: say so for this source and go on with the others
            return [{"_source": src.path, "skipped": str(e)}]
    out = []
    for i, raw in head:
        skipped: dict[str, int] = {}
        got = read_source_rows([(i, raw)], src, use, seed=0, skipped=skipped)
        out.append(got[0] if got else {"_source": raw.get("_source", f"{src.label()}[{i}]"), "skipped": next(iter(skipped))})
    return out


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def sft_entry(record: dict, tokenizer, max_length: int | None, stage: str) -> dict:
    """The rendered text and the text of its loss tokens, as `podium.training.sft` tokenises the record."""
    ex, _ = truncate_sft(tokenize_sft(chat_record(record, tokenizer, stage), tokenizer), max_length)
    ids, trained = ex["input_ids"], [label != IGNORE for label in ex["labels"]]
    spans, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or trained[i] != trained[start]:
            spans.append([decode(tokenizer, ids[start:i]), trained[start]])
            start = i
    return {"text": decode(tokenizer, ids), "trained": decode(tokenizer, [t for t, on in zip(ids, trained) if on]),
            "spans": spans}


def pair_entry(record: dict, tokenizer, max_length: int | None, stage: str) -> dict:
    """prompt / chosen / rejected as `podium.training.train` tokenises the pair (truncation included)."""
    if tokenizer is None:
        return {k: record[k] for k in ("prompt", "chosen", "rejected")}
    examples, stats = tokenize_pairs([chat_record(record, tokenizer, stage)], tokenizer, max_length)
    if not examples:
        return {"skipped": next(iter(stats.dropped))}
    ex = examples[0]
    return {k: decode(tokenizer, ex[f"{k}_ids"]) for k in ("prompt", "chosen", "rejected")}


def prompt_entry(record: dict, tokenizer, stage: str) -> dict:
    out = {"prompt": prompt_text(tokenizer, chat_prompt(record, tokenizer, stage))}
    return {**out, **{k: record[k] for k in ("answer", "reference") if k in record}}


def consumer(views: list[StageView], view: StageView) -> StageView | None:
    """The first later stage that trains on `view`'s output (for a pair builder's tokenizer)."""
    for later in views[views.index(view) + 1:]:
        data = setting(later.config, "data")
        if later.kind in ("train", "sft") and data is not None:
            if any(s.path and producer([view], s.path) is view for s in as_sources(data)):
                return later
    return None


def stage_tokenizer(views: list[StageView], view: StageView, model: str | None):
    """The tokenizer the stage renders with (`model` overrides it); None for a pair builder nothing trains on."""
    if model is not None:
        return load_tokenizer(model)
    target = consumer(views, view) if view.kind == "pairs" else view
    if target is None:
        return None
    origin = tokenizer_origin(views, target)
    if origin is None:
        raise PodiumError(f"stage {view.name!r}: cannot tell which tokenizer renders its data; pass --model DIR")
    try:
        return load_origin_tokenizer(origin)
    except PodiumError as e:
        raise PodiumError(f"stage {view.name!r}: {e}; pass --model DIR to preview with a local model's tokenizer") from None


def preview_stage(recipe: str, stage: str, rows: int = 3, overrides: list[str] = (), model: str | None = None,
                  output: str | None = None) -> list[dict]:
    """The first `rows` rows of every source of `stage` in `recipe` (run dir `output`, as `podium run --output`),
    rendered as training sees them (module doc)."""
    plan = make_plan(recipe, list(overrides), output)
    views = [StageView(ps.name, ps.kind, ps.config, ps.out_dir) for ps in plan.stages]
    readers = [v.name for v in views if v.kind in STAGE_SOURCES]
    view = next((v for v in views if v.name == stage), None)
    if view is None or view.kind not in STAGE_SOURCES:
        what = f"stage {stage!r} ({view.kind}) reads no data" if view else f"no stage {stage!r} in {recipe}"
        raise PodiumError(f"{what}; stages with data to preview: {', '.join(readers) or 'none'}")
    use = STAGE_SOURCES[view.kind][1]
    tokenizer = stage_tokenizer(views, view, model)
    target = consumer(views, view) if view.kind == "pairs" else view
    max_length = setting(target.config, "max_length") if target is not None else None
    entries = []
    for src in stage_sources(view):
        for i, record in enumerate(read_head(src, use, rows, views)):
            base = {"source": src.label(), "row": record.get("_source", f"{src.label()}[{i}]")}
            if "skipped" in record:
                entries.append({**base, "skipped": record["skipped"]})
            elif view.kind == "sft":
                entries.append({**base, **sft_entry(record, tokenizer, max_length, view.name)})
            elif view.kind == "train":
                entries.append({**base, **pair_entry(record, tokenizer, max_length, view.name)})
            elif view.kind == "pairs":
                built = [conversational(p) for p in record_pairs(record, i, view.config)]
                entries.extend({**base, **pair_entry(p, tokenizer, max_length, view.name)} for p in built)
                if not built:
                    entries.append({**base, "skipped": f"no pair ({setting(view.config, 'builder')})"})
            else:
                entries.append({**base, **prompt_entry(record, tokenizer, view.name)})
    return entries
