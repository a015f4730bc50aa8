"""A synthetic run dir as the pipeline leaves it: report.json, stage configs, metrics.jsonl, eval results."""

import json
from pathlib import Path

V2_RESULTS = {
    "leaderboard_ifeval": {"inst_level_strict_acc": 0.8, "prompt_level_strict_acc": 0.7},
    "leaderboard_bbh_boolean_expressions": {"acc_norm": 0.75},
    "leaderboard_math_algebra_hard": {"exact_match": 0.15},
    "leaderboard_gpqa_main": {"acc_norm": 0.4},
    "leaderboard_musr_team_allocation": {"acc_norm": 0.5},
    "leaderboard_mmlu_pro": {"acc": 0.37},
    "toy_mc": {"acc": 0.5, "acc_norm": 0.625},
}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_run(root: Path, *, with_report: bool = True) -> Path:
    run = root / "run"
    (run).mkdir(parents=True)
    (run / "recipe.yaml").write_text("stages:\n  - {name: sft, kind: sft}\n  - {name: dpo, kind: train}\n")
    write_json(run / "sft" / "config.json", {"model": "org/base-7b", "data": "org/chat-mix", "learning_rate": 2e-5,
                                             "epochs": 1})
    # As the pipeline writes it: the settings sit under "config" next to name, kind, key and deps.
    write_json(run / "dpo" / "config.json", {"name": "dpo", "kind": "train", "key": "abc", "deps": ["sft"], "config": {
        "model": str(run / "sft"), "data": str(run / "pairs.jsonl"), "objective": "dpop", "beta": 0.3,
        "lambda": 50.0, "learning_rate": 5e-7, "lora": {"r": 16, "alpha": 32}}})
    (run / "dpo" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "loss": 0.69 - 0.05 * i, "rewards/margins": 0.1 * i}) + "\n"
                for i in range(6)) + '{"step": 7, "loss"\n')  # a line cut short by a kill
    write_json(run / "sppo" / "config.json", {"model": str(run / "dpo"), "objective": "sppo", "eta": 1000.0})
    write_json(run / "eval" / "config.json", {"model": str(run / "sppo"), "tasks": ["open-llm-v2", "toy_mc"],
                                              "baseline": "org/base-7b"})
    write_json(run / "eval" / "results.json", {"tasks": V2_RESULTS})
    if with_report:
        write_json(run / "report.json", {"recipe": "recipe.yaml", "stages": [
            {"name": "sft", "kind": "sft", "status": "done", "seconds": 12.5, "metrics": {"loss": 1.2}},
            {"name": "dpo", "kind": "train", "status": "done", "seconds": 30.0,
             "metrics": {"loss": 0.44, "accuracy/gsm8k_toy": 0.31}},
            {"name": "sppo", "kind": "selfplay", "status": "done", "seconds": 50.0,
             "metrics": {"iter1/win_rate": 55.0, "iter2/win_rate": 61.0, "iter1/lc_win_rate": 52.0,
                         "iter2/lc_win_rate": 57.5, "accuracy/gsm8k_toy": 0.36}},
            {"name": "eval", "kind": "eval", "status": "done", "seconds": 9.0,
             "metrics": {"accuracy/gsm8k_toy": 0.4, "pass@4/gsm8k_toy": 0.55, "accuracy": 0.4, "win_rate": 61.0,
                         "lc_win_rate": 57.5}},
        ]})
    return run
