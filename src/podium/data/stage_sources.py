"""Which data sources a stage reads and what for, and whose tokenizer renders them.

Shared by `podium run --dry-run` (podium.data.source_check) and `podium preview`: both look at a
planned stage before it runs, when its `model` may be an earlier stage's output that does not exist
yet. The tokenizer is then found by following the chain of `model` settings back to a folder, a Hub
id or the embedded tiny model (whose character tokenizer has a chat template).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from podium.data.mixture import DataSource, as_sources
from podium.models.io import load_tokenizer
from podium.models.tiny import build_tokenizer

# stage kind -> (config field holding its data, what the stage reads it for; None: rows as published)
STAGE_SOURCES: dict[str, tuple[str, str | None]] = {
    "sft": ("data", "sft"), "train": ("data", "pairs"), "pairs": ("data", None), "sgd": ("prompts", "prompts"),
    "selfplay": ("prompts", "prompts"), "eval": ("prompts", "prompts"), "generate": ("prompts", "prompts"),
}
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@dataclass
class StageView:
    """A planned stage as the checks see it: name, kind, validated config and output folder."""

    name: str
    kind: str
    config: Any
    out_dir: Path


def setting(config, key: str, default=None):
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def stage_sources(view: StageView) -> list[DataSource]:
    """The sources a stage reads: its data mixture, or the built-in task items it draws."""
    if view.kind not in STAGE_SOURCES:
        return []
    key, _ = STAGE_SOURCES[view.kind]
    data = setting(view.config, key)
    if data is not None:
        return as_sources(data)
    if view.kind in ("sgd", "selfplay") or (view.kind == "eval" and (setting(view.config, "task")
                                                                      or not setting(view.config, "lm_eval_tasks"))):
        return [DataSource(task=setting(view.config, "task") or "arithmetic", count=5,
                           difficulty=setting(view.config, "difficulty") or {})]
    return []


def producer(views: list[StageView], path: str) -> StageView | None:
    """The earlier stage whose output folder `path` is (or lies in)."""
    p = Path(path).resolve()
    for view in views:
        out = view.out_dir.resolve()
        if p == out or out in p.parents:
            return view
    return None


def stage_model(view: StageView) -> str | None:
    """The model a stage starts from (a merge: its base model, else its first model)."""
    if view.kind == "merge":
        cfg = setting(view.config, "config") or {}
        base = cfg.get("base_model") if isinstance(cfg, dict) else None
        models = [m.get("model") for m in (cfg.get("models") or []) if isinstance(m, dict)] if isinstance(cfg, dict) else []
        slices = [s.get("model") for sl in (cfg.get("slices") or []) for s in sl.get("sources", [])] \
            if isinstance(cfg, dict) else []
        return base or next(iter(models + slices), None)
    model = setting(view.config, "model")
    return model.split("+")[0] if isinstance(model, str) else None


def tokenizer_origin(views: list[StageView], view: StageView, depth: int = 0) -> tuple[str, str] | None:
    """Where the stage's tokenizer comes from: ("tiny", ""), ("folder", PATH) or ("hub", ID); None when unknown."""
    if view.kind == "tiny_model":
        return ("tiny", "")
    model = stage_model(view)
    if model is None or depth > 20:
        return None
    if (Path(model) / "tokenizer_config.json").is_file() or (Path(model) / "tokenizer.json").is_file():
        return ("folder", model)
    earlier = producer([v for v in views if v is not view], model)
    if earlier is not None:
        return tokenizer_origin(views, earlier, depth + 1)
    if Path(model).exists():
        return ("folder", model)
    return ("hub", model)


def folder_has_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in TEMPLATE_FILES):
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def has_template(origin: tuple[str, str] | None) -> bool | None:
    """Whether the tokenizer at `origin` has a chat template; None when it cannot be known here (a Hub id that is
    not in the local cache)."""
    if origin is None:
        return None
    kind, where = origin
    if kind == "tiny":
        return True
    if kind == "folder":
        return folder_has_template(Path(where))
    try:  # the Hub's cache only: a dry run downloads nothing
        folder = Path(snapshot_download(where, allow_patterns=["tokenizer_config.json", *TEMPLATE_FILES],
                                        local_files_only=True))
    except Exception:  # not cached (offline machines), or no such repository
        return None
    return folder_has_template(folder) if (folder / "tokenizer_config.json").is_file() else None


def load_origin_tokenizer(origin: tuple[str, str]):
    """The tokenizer at `origin` (the tiny model's is built, not read)."""
    kind, where = origin
    return build_tokenizer() if kind == "tiny" else load_tokenizer(where)
