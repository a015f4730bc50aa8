"""A synthetic run dir in the layout the pipeline writes (podium.rundir): report.json, stage.json,
metrics.json, the completion marker, metrics.jsonl, a model stage's own config.json and eval results.

Stage configs are dumped from the real stage config classes, so a renamed or removed setting breaks
the fixture instead of silently testing a layout podium never produces. Rates are fractions.
"""

import json
from pathlib import Path

from podium.rundir import STEP_METRICS_FILE, StageEntry, StageRecord, write_run_report, write_stage_done, write_stage_record
from podium.stages import get_stage

V2_RESULTS = {
    "leaderboard_ifeval": {"inst_level_strict_acc": 0.8, "prompt_level_strict_acc": 0.7},
    "leaderboard_bbh_boolean_expressions": {"acc_norm": 0.75},
    "leaderboard_math_algebra_hard": {"exact_match": 0.15},
    "leaderboard_gpqa_main": {"acc_norm": 0.4},
    "leaderboard_musr_team_allocation": {"acc_norm": 0.5},
    "leaderboard_mmlu_pro": {"acc": 0.37},
    "toy_mc": {"acc": 0.5, "acc_norm": 0.625},
}
RECIPE = """\
stages:
  - {name: sft, kind: sft, model: org/base-7b, data: org/chat-mix, learning_rate: 2.0e-5, epochs: 1}
  - {name: dpo, kind: train, model: "@sft", data: pairs.jsonl, objective: dpop, beta: 0.3, lambda: 50,
     learning_rate: 5.0e-7, lora: {r: 16, alpha: 32}}
  - {name: sppo, kind: selfplay, model: "@dpo", baseline: org/base-7b, task: arithmetic, iterations: 2}
  - {name: eval, kind: eval, model: "@sppo", lm_eval_tasks: [open-llm-v2, toy_mc], task: arithmetic}
"""


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def stage_config(kind: str, settings: dict) -> dict:
    """The config as the pipeline stores it in stage.json: validated by the stage's class, dumped with its keys."""
    return json.loads(get_stage(kind).config.model_validate(settings).model_dump_json(by_alias=True))


def add_stage(run: Path, name: str, kind: str, settings: dict, metrics: dict, seconds: float) -> StageEntry:
    folder = run / name
    folder.mkdir(parents=True, exist_ok=True)
    write_stage_record(folder, StageRecord(name, kind, key=f"key-{name}", deps=[], config=stage_config(kind, settings)))
    write_stage_done(folder, f"key-{name}", seconds, metrics)
    return StageEntry(name, kind, "ran", seconds, metrics)


def make_run(root: Path, *, with_report: bool = True) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(RECIPE)
    entries = [
        add_stage(run, "sft", "sft", {"model": "org/base-7b", "data": "org/chat-mix", "learning_rate": 2e-5,
                                      "epochs": 1.0}, {"train_loss": 1.2, "steps": 100}, 12.5),
        add_stage(run, "dpo", "train", {"model": str(run / "sft"), "data": str(run / "pairs.jsonl"),
                                        "objective": "dpop", "beta": 0.3, "lambda_": 50.0, "learning_rate": 5e-7,
                                        "lora": {"r": 16, "alpha": 32}}, {"loss": 0.44}, 30.0),
        add_stage(run, "sppo", "selfplay", {"model": str(run / "dpo"), "baseline": "org/base-7b", "task": "arithmetic",
                                            "objective": "sppo", "iterations": 2},
                  {"iter1/win_rate": 0.55, "iter2/win_rate": 0.61, "win_rate": 0.61, "iter1/accuracy": 0.33,
                   "iter2/accuracy": 0.36, "accuracy": 0.36}, 50.0),
        add_stage(run, "eval", "eval", {"model": str(run / "sppo"), "task": "arithmetic",
                                        "lm_eval_tasks": ["open-llm-v2", "toy_mc"]},
                  {"accuracy/arithmetic": 0.4, "pass@4/arithmetic": 0.55, "accuracy": 0.4}, 9.0),
    ]
    # Model stages save their model into the stage folder: its config.json is the model's, not the stage's.
    for model_stage in ("sft", "dpo", "sppo"):
        write_json(run / model_stage / "config.json", {"model_type": "llama", "hidden_size": 128})
    (run / "dpo" / STEP_METRICS_FILE).write_text(
        "".join(json.dumps({"step": i + 1, "loss": 0.69 - 0.05 * i, "rewards/margins": 0.1 * i}) + "\n"
                for i in range(6)) + '{"step": 7, "loss"\n')  # a line cut short by a kill
    write_json(run / "eval" / "results.json", {"tasks": {"arithmetic": {"accuracy": 0.4}, **V2_RESULTS}})
    if with_report:
        write_run_report(run, "recipe.yaml", None, entries)
    return run
