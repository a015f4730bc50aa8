"""The `card` stage: README.md model card (and, by default, the run report) for the run so far.

    - name: card
      kind: card
      model: "@dpo"          # optional: the final model; with copy_to_model the card is also put there
      license: apache-2.0
      tags: [math]

The card reads the run dir as it stands when the stage runs: report.json (if the
pipeline has written it yet) and each stage folder's config.json, metrics.jsonl,
results.json and leaderboard_v*.json.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from podium.cards.model_card import build_card
from podium.cards.report import write_report
from podium.cards.run_info import load_run
from podium.errors import ConfigError
from podium.files import write_text
from podium.refs import DataRef, ModelRef
from podium.stages import StageConfig, StageContext, stage


class CardConfig(StageConfig):
    model: ModelRef | None = None
    run_dir: str | None = None
    model_name: str | None = None
    license: str | None = None
    base_model: ModelRef | list[ModelRef] | None = None
    datasets: list[DataRef] | None = None
    tags: list[str] = Field(default_factory=list)
    language: str | list[str] | None = None
    copy_to_model: bool = False
    report: bool = True


@stage("card", CardConfig, outputs={"card": "README.md"})
def card(cfg: CardConfig, ctx: StageContext) -> dict[str, float]:
    """Write the model card README.md (and the run report) from the run dir."""
    run_dir = Path(cfg.run_dir) if cfg.run_dir else (ctx.run_dir or ctx.out_dir.parent)
    run = load_run(run_dir)
    model_card = build_card(run, model_name=cfg.model_name, license=cfg.license, base_model=cfg.base_model,
                            datasets_=cfg.datasets, tags=cfg.tags, language=cfg.language, model=cfg.model)
    out = ctx.out_dir / "README.md"
    model_card.save(out)
    if cfg.copy_to_model:
        if not cfg.model or not Path(cfg.model).is_dir():
            raise ConfigError(f"card.copy_to_model: `model` must be a model folder, got {cfg.model!r}")
        # A new file renamed into place: the model folder may share its files (hard links) with another seed's.
        write_text(Path(cfg.model) / "README.md", out.read_text())
    if cfg.report:
        write_report(run_dir)
    return {"eval_results": float(len(model_card.data.eval_results or []))}
