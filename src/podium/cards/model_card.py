"""Model card (README.md) for a run: Hub front matter with `model-index`, method, hyperparameters, recipe, results.

The front matter is built with huggingface_hub's `ModelCardData` and `EvalResult`, so
`ModelCard.load(path).data.eval_results` gives the results back. Any part of the run
that is missing (no report, no eval stage, no recipe file) only drops its section.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

from podium.cards.iterations import iteration_sections
from podium.cards.methods import MERGE_KINDS, Method, stage_method
from podium.cards.model_index import collect_scores, eval_results, results_markdown
from podium.cards.run_info import RunInfo, load_run
from podium.errors import PodiumError
from podium.ownership import write_output_text
from podium.refs import iter_refs
from podium.rundir import require_run_dir
from podium.stages import get_stage

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Settings that describe where things are, not how the model was trained (references are skipped too).
SKIP_HPARAMS = {"tokenizer", "output", "out_dir", "kind", "trust_remote_code", "reference_cache_dir"}


def inside(path: str, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def stage_refs(stage) -> list[tuple[tuple, str, str]]:
    """(key path, "model" | "dataset" | "file", value) of the stage's typed references (podium.refs);
    none for a stage kind podium does not know."""
    try:
        schema = get_stage(stage.kind).config
    except PodiumError:
        return []
    return list(iter_refs(schema, stage.config))


def external(values: list[str], run: RunInfo) -> list[str]:
    """Values that point outside the run dir (base models, datasets), first-seen order, no duplicates."""
    out: list[str] = []
    for v in values:
        if v and not v.startswith("@") and not inside(v, run.run_dir) and v not in out:
            out.append(v)
    return out


def base_models(run: RunInfo) -> list[str]:
    """The models the first stage that reads models from outside the run dir starts from."""
    for s in run.stages:
        found = external([v for _, kind, v in stage_refs(s) if kind == "model"], run)
        if found:
            return found
    return []


def datasets(run: RunInfo) -> list[str]:
    return external([v for s in run.stages for _, kind, v in stage_refs(s) if kind == "dataset"], run)


def license_of(model: str) -> str | None:
    """The license in a local base model's own README front matter, if there is one."""
    readme = Path(model) / "README.md"
    if not readme.is_file():
        return None
    try:
        return ModelCard.load(readme).data.license
    except (OSError, ValueError, TypeError, yaml.YAMLError):  # a hand-written README without valid front matter
        return None


def methods_used(run: RunInfo) -> list[tuple[Method, list[str]]]:
    used: dict[str, tuple[Method, list[str]]] = {}
    for s in run.stages:
        m = stage_method(s.kind, s.config)
        if m is not None:
            used.setdefault(m.key, (m, []))[1].append(s.name)
    return list(used.values())


def hyperparameter_tables(run: RunInfo) -> str:
    parts = []
    for s in run.stages:
        if stage_method(s.kind, s.config) is None or s.kind in MERGE_KINDS:
            continue
        refs = [path for path, _, _ in stage_refs(s)]
        skip = SKIP_HPARAMS | {path[0] for path in refs}
        rows = [(k, v) for k, v in s.config.items() if k not in skip and v is not None
                and (isinstance(v, (int, float, str, bool)))]
        rows += [(f"{k}.{k2}", v2) for k, v in s.config.items() if isinstance(v, dict) and k not in SKIP_HPARAMS
                 for k2, v2 in v.items() if isinstance(v2, (int, float, str, bool)) and (k, k2) not in refs]
        if not rows:
            continue
        lines = [f"#### `{s.name}` ({s.kind or 'stage'})", "", "| Setting | Value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        if s.steps:
            lines.append(f"\nTrained for {s.steps[-1].get('step', len(s.steps))} optimizer steps.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "No training stage configs were found in the run dir."


def merge_configs(run: RunInfo) -> str:
    parts = []
    for s in run.by_kind(*MERGE_KINDS):
        cfg = s.config.get("config") if isinstance(s.config.get("config"), dict) else None
        if cfg:
            parts.append(f"#### `{s.name}` (mergekit configuration)\n\n```yaml\n{yaml.safe_dump(cfg, sort_keys=False)}```")
    return "\n\n".join(parts)


def recipe_section(run: RunInfo) -> str:
    stages = " → ".join(f"`{s.name}` ({s.kind})" if s.kind else f"`{s.name}`" for s in run.stages)
    text = f"Stages: {stages}\n" if stages else ""
    if run.recipe is not None:
        try:
            text += f"\n```yaml\n{run.recipe.read_text().rstrip()}\n```\n"
        except OSError:
            pass
    return text or "No recipe was recorded for this run."


def build_card(
    run: RunInfo,
    *,
    model_name: str | None = None,
    license: str | None = None,
    base_model: str | list[str] | None = None,
    datasets_: list[str] | None = None,
    tags: list[str] | None = None,
    language: str | list[str] | None = None,
    model: str | None = None,
) -> ModelCard:
    """The model card of `run`; explicit arguments override what is read from the run dir."""
    model_name = model_name or run.run_dir.resolve().name
    bases = [base_model] if isinstance(base_model, str) else (base_model or base_models(run))
    data = datasets_ if datasets_ is not None else datasets(run)
    methods = methods_used(run)
    license = license or next((lic for b in bases if (lic := license_of(b))), None) or "other"
    all_tags = ["podium", "alignment"] + [t for m, _ in methods for t in m.tags] + list(tags or [])
    scores = collect_scores(run, model)
    card_data = ModelCardData(
        model_name=model_name,
        license=license,
        base_model=[b for b in bases if HUB_ID.match(b)] or None,
        datasets=[d for d in data if HUB_ID.match(d)] or None,
        tags=list(dict.fromkeys(all_tags)),
        pipeline_tag="text-generation",
        library_name="transformers",
        language=language,
        eval_results=eval_results(scores, model_name) or None,
    )

    body = [f"# {model_name}", ""]
    summary = "This model was trained with podium"
    summary += f" from `{', '.join(bases)}`" if bases else ""
    summary += f" using {', '.join(m.title for m, _ in methods)}." if methods else "."
    body += [summary, ""]
    if data:
        body += ["Training data: " + ", ".join(f"`{d}`" for d in data) + ".", ""]
    body += ["## Method", ""]
    if methods:
        for m, stages in methods:
            body += [f"**{m.title}** (stages: {', '.join(f'`{s}`' for s in stages)}). {m.summary}", ""]
    else:
        body += ["No training or merging stage was recorded.", ""]
    body += ["## Evaluation results", "", results_markdown(scores), ""]
    if selfplay := iteration_sections(run):
        body += ["## Self-play iterations", "", *selfplay]
    body += ["## Training hyperparameters", "", hyperparameter_tables(run), ""]
    merges = merge_configs(run)
    if merges:
        body += [merges, ""]
    body += ["## Recipe", "", recipe_section(run), ""]
    citations = [m.citation for m, _ in methods if m.citation]
    if citations:
        body += ["## Citation", "", "```bibtex", "\n\n".join(citations), "```", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body))


def write_card(run_dir: str | os.PathLike, out_path: str | os.PathLike | None = None, overwrite: bool = False,
               **overrides) -> Path:
    """Write the card of `run_dir` (a podium run dir) to `out_path` (default RUN_DIR/README.md); returns the path.

    An existing file there is replaced only when podium wrote it and it is unchanged since, or with
    `overwrite` (podium.ownership); never a file inside the run's base models."""
    run = load_run(require_run_dir(run_dir, "write a model card (README.md)"))
    out = Path(out_path) if out_path else run.run_dir / "README.md"
    card = build_card(run, **overrides)
    return write_output_text(out, str(card), inputs=base_models(run), overwrite=overwrite)

