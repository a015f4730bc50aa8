"""What `--dry-run` (and every run, before anything runs) finds that would otherwise fail late.

The settings themselves are checked when the plan is made (types, ranges, finite numbers, counts: the
stage schemas and podium.config). This module checks them against the world around the plan:

- (names against the filesystem are checked when the plan is made: a stage folder, the run dir and the
  temp and lock names podium derives from them must fit its limits, podium.models.publish.name_problem);
- a merge against its input models, when they are local folders: layer ranges past a model's layers,
  missing tensors, shapes, architectures (podium.merging.executor.merge_problem, headers only);
- generation lengths against a local model's positions: `max_new_tokens` that can never fit.

Inputs that do not exist yet (an earlier stage's output on a first run, a Hub id) are checked when the
stage runs.
"""

from __future__ import annotations

from pathlib import Path

from podium.errors import PodiumError
from podium.limits import read_json_bounded
from podium.merging.executor import merge_problem
from podium.merging.stage import MergeStageConfig, build_merge_config
from podium.models.folder_checks import config_problem
from podium.models.io import max_positions


def late_problems(run_dir: Path, stages) -> list[str]:
    """Problems of the stages that will run (`stages`: planned stages with name, kind, config, out_dir, status)."""
    problems = []
    for ps in stages:
        if ps.status == "cached":
            continue
        for why in stage_problems(ps.config):
            problems.append(f"stage {ps.name!r}: {why}")
    return problems


def stage_problems(cfg) -> list[str]:
    """A stage config checked against the local models it names."""
    found = []
    if isinstance(cfg, MergeStageConfig) and cfg.lora_adapter is None:
        try:
            if why := merge_problem(build_merge_config(cfg)):
                found.append(f"merge: {why}")
        except PodiumError as e:
            found.append(str(e))
    max_new, model = getattr(cfg, "max_new_tokens", None), getattr(cfg, "model", None)
    if isinstance(max_new, int) and isinstance(model, str) and (Path(model) / "config.json").is_file():
        try:
            config = read_json_bounded(Path(model) / "config.json", what="config.json")
        except PodiumError as e:
            return [*found, str(e)]
        if why := config_problem(config):
            found.append(f"{Path(model) / 'config.json'}: {why}")
        elif (limit := max_positions(config)) is not None and max_new >= limit:
            found.append(f"max_new_tokens={max_new:,} does not fit the {limit:,} positions of model {model} "
                         "(max_position_embeddings); lower max_new_tokens")
    return found
