"""Files and flat metrics an evaluation leaves in its stage folder, in the form cards and reports read.

    results.json          {"tasks": {task: {metric: value}}}     (podium eval --output)
    lm_eval_results.json  {"results": lm-eval's own results}     (when lm-eval ran)
    leaderboard_v1.json   {"average", "tasks"}                    (when the whole v1 suite is there)
    leaderboard_v2.json   {"average", "tasks"}                    (likewise v2)

Flat metrics for report.json: `<task>/<metric>` (`accuracy/<task>` for built-in task
accuracy), `leaderboard_v2/<name>` and `leaderboard_v2/average` (v1 likewise).
"""

from __future__ import annotations

import os
from pathlib import Path

from podium.evaluation.leaderboard import leaderboard
from podium.files import write_json


def flat_metrics(result: dict, boards: dict[str, dict] | None = None) -> dict[str, float]:
    """`{"tasks": ...}` (+ leaderboards) -> {"<task>/<metric>" | "accuracy/<task>" | "leaderboard_vN/<name>": value}."""
    out: dict[str, float] = {}
    for task, metrics in result.get("tasks", {}).items():
        for metric, value in metrics.items():
            out[f"accuracy/{task}" if metric == "accuracy" else f"{task}/{metric}"] = float(value)
    for version, board in (boards or {}).items():
        if board.get("average") is not None:
            out[f"leaderboard_{version}/average"] = float(board["average"])
        for name, value in board["tasks"].items():
            out[f"leaderboard_{version}/{name}"] = float(value)
    return out


def write_eval_outputs(out_dir: str | os.PathLike, result: dict, raw: dict | None = None) -> dict[str, float]:
    """Write results.json (+ lm_eval_results.json, leaderboard_v*.json) into `out_dir`; return flat metrics.

    `result` is what `run_eval` / `evaluate_lm_eval` return; `raw` is lm-eval's own `results`
    dict (the `raw=` argument of those functions), from which the leaderboards are computed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result)
    source = raw or result.get("tasks", {})
    if raw:
        write_json(out / "lm_eval_results.json", {"results": raw})
    boards = {}
    for version in ("v1", "v2"):
        board = leaderboard(source, version)
        if not board.get("missing"):
            boards[version] = board
            write_json(out / f"leaderboard_{version}.json", board)
    return flat_metrics(result, boards)
