"""accelerate's Accelerator for a training run, and the experiment trackers of `report_to` (as TRL's)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from podium.errors import PodiumError
from podium.training.settings import TrainSettings


def get_accelerator(report_to: Sequence[str] = (), out_dir: Path | None = None):
    """accelerate's Accelerator; with `report_to`, its experiment trackers log under `out_dir/tracking`."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if not report_to:
        return Accelerator()
    check_trackers(report_to)
    project = ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "tracking"))
    return Accelerator(log_with=list(report_to), project_config=project)


# report_to name -> the package its accelerate tracker needs.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}


def check_trackers(report_to: Sequence[str]) -> None:
    missing = [TRACKER_PACKAGES[t] for t in report_to if importlib.util.find_spec(TRACKER_PACKAGES[t]) is None]
    if missing:
        raise PodiumError(f"report_to {list(report_to)}: {', '.join(missing)} not installed (pip install "
                          f"{' '.join(missing)})")


def start_trackers(acc, report_to: Sequence[str], settings: TrainSettings, out: Path) -> None:
    """Open the run in each tracker (main process only), as TRL's `report_to` does through accelerate.

    Everything stays on this machine unless the tracker is told otherwise: TensorBoard and trackio write
    local files, MLflow its MLFLOW_TRACKING_URI (default ./mlruns), and W&B without an API key or
    WANDB_MODE runs offline into `out/tracking` (`wandb sync` uploads it later).
    """
    if "wandb" in report_to and not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    config = {k: v for k, v in settings.model_dump().items() if isinstance(v, (bool, int, float, str))}
    acc.init_trackers(out.name, config=config, init_kwargs={
        "wandb": {"name": out.name, "dir": str(out / "tracking")}, "mlflow": {"run_name": out.name}})


def finish_trackers(acc) -> None:
    # Not acc.end_training(): it also ends the process group, which the stage may still need.
    for tracker in acc.trackers:
        tracker.finish()
