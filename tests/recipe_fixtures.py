"""A full-scale recipe pointed at local copies of its datasets and at a tiny model, for tests.

What is kept is what the recipe says about its data: every source's `format`, `columns`, `gold`,
`name`, `revision` and `data_files`, and each stage's data settings (pair builders, templates).
What changes is scale and hardware: Hub dataset ids become the fixture folders of tests/hub_fixtures.py,
Hub models the tiny model, the `launch:` blocks and lm-eval/merge/card stages go, training runs a few
steps, sampling runs on the transformers backend, and a self-play judge that needs a downloaded model
becomes a reward model trained from the tiny one on the recipe's own preference data.
"""

from __future__ import annotations

from pathlib import Path

import yaml

RECIPES = Path(__file__).parents[1] / "recipes"
FULL_SCALE = ["rhea-sgd-dpo", "smaug-dpop", "sakura-solar", "sppo-gemma-2-9b", "sppo-gpm-llama-3-8b"]
TRAIN_STEPS = {"max_steps": 2, "batch_size": 2, "gradient_accumulation_steps": 1, "save_steps": 0}


def localise_sources(data, hub: dict[str, str]):
    """A mixture with Hub dataset ids replaced by their fixture folders (a missing fixture is a KeyError)."""
    if isinstance(data, str):
        return hub[data] if not data.startswith("@") else data
    if isinstance(data, dict):
        return {**data, "path": localise_sources(data["path"], hub)} if "path" in data else data
    return [localise_sources(d, hub) for d in data]


def local_recipe(name: str, hub: dict[str, str], model: Path, out: Path, reward_model: str | None = None) -> Path:
    """Write recipes/NAME.yaml rewritten for fixtures and `model` into `out`; returns its path."""
    recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    recipe.pop("launch", None)
    recipe["name"] = f"local-{name}"
    dropped = {s["name"] for s in recipe["stages"] if s["kind"] in ("merge", "card")
               or (s["kind"] == "eval" and s.get("lm_eval_tasks"))}
    stages = []
    for stage in recipe["stages"]:
        if stage["name"] in dropped:
            continue
        stage = dict(stage)
        stage.pop("launch", None)  # a stage's own launch (Rhea's dpo: FSDP2 with CPU offload) goes with the recipe's
        if isinstance(stage.get("model"), str) and (not stage["model"].startswith("@")
                                                     or stage["model"][1:] in dropped):
            stage["model"] = str(model)
        for key in ("data", "prompts"):
            if key in stage:
                stage[key] = localise_sources(stage[key], hub)
        if stage["kind"] in ("sft", "train"):
            stage.update(TRAIN_STEPS, max_length=min(stage.get("max_length", 512), 512))
            stage.pop("epochs", None)
        if stage["kind"] in ("sgd", "selfplay"):
            for key in ("backend", "tensor_parallel_size", "gpu_memory_utilization"):
                stage.pop(key, None)
            stage.update(num_samples=2, max_new_tokens=8, batch_size=8)
        if stage["kind"] == "selfplay":
            stage.update(count=1, iterations=1, eval_count=1, train={**stage.get("train", {}), **TRAIN_STEPS,
                                                                      "max_length": 256})
            stage["judge"] = {"kind": "reward", "model": reward_model}
        stages.append(stage)
    recipe["stages"] = stages
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
