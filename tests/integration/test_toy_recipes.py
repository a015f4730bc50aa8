"""Every toy recipe (the seed systems on the embedded default) runs end to end on 2 CPU cores."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TOYS = sorted((ROOT / "recipes" / "toy").glob("*.yaml"))


@pytest.mark.integration
@pytest.mark.parametrize("recipe", TOYS, ids=[p.stem for p in TOYS])
def test_toy_recipe_runs(recipe, tmp_path):
    t0 = time.time()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(recipe), "--output", str(tmp_path), "--no-progress"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.time() - t0 < 600
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(s["status"] == "ran" for s in report["stages"])
    assert all((tmp_path / s["name"] / ".podium-done").exists() for s in report["stages"])
    assert (tmp_path / "report.md").exists()

    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "card" / "README.md")
    assert card.data.eval_results, "the card has no model-index"
    eval_stage = next(s for s in report["stages"] if s["kind"] == "eval")
    assert 0.0 <= eval_stage["metrics"]["accuracy"] <= 1.0
