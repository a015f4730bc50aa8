"""`podium KIND CONFIG.yaml [--output DIR] [key=value ...]` and `podium stage KIND CONFIG.yaml ...`: one stage alone."""

from __future__ import annotations

import argparse
import json
import os

from podium.config import load_stage_config
from podium.errors import PodiumError
from podium.ownership import command_output
from podium.refs import iter_refs
from podium.stages import get_stage, run_stage


def stage_command(kind: str | None, argv: list[str]) -> int:
    """Run stage kind `kind` (or the KIND argument when None) from a YAML config; prints its metrics as JSON."""
    p = argparse.ArgumentParser(prog=f"podium {kind or 'stage KIND'}",
                                description=f"Run stage kind {kind or 'KIND'} alone from a YAML config.")
    if kind is None:
        p.add_argument("kind")
    p.add_argument("config", help="YAML with the stage's settings (and output_dir)")
    p.add_argument("--output", "-o", help="output folder (overrides the config's output_dir)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing folder podium did not make "
                   "(files podium writes are replaced; no other file is deleted)")
    p.add_argument("overrides", nargs="*", help="key=value")
    args = p.parse_intermixed_args(argv)
    kind = kind or args.kind
    spec = get_stage(kind)
    cfg, output_dir = load_stage_config(spec.config, args.config, args.overrides, what=kind)
    out = args.output or output_dir
    if not out:
        raise PodiumError(f"{args.config}: set output_dir in the config or pass --output DIR")
    # One podium per output folder (checkpoints, metrics.jsonl, renames), never a folder of the user's or one
    # of the stage's inputs (podium.ownership); under `accelerate launch` the processes of one job share it, and
    # rank 0 checks, locks and marks it for them.
    main_rank = os.environ.get("RANK", "0") in ("", "0")
    config = json.loads(cfg.model_dump_json(by_alias=True))
    inputs = [value for _, _, value in iter_refs(spec.config, config)]
    with command_output(out, kind, config, inputs, args.overwrite, what="stage folder", main=main_rank) as record:
        metrics = run_stage(kind, cfg, out)
        record.update(metrics)
    print(json.dumps(metrics, default=str))
    return 0


def main(argv: list[str]) -> int:
    """`podium stage KIND CONFIG.yaml ...`."""
    return stage_command(None, argv)
