"""The README's multi-seed example, end to end: `podium run recipes/examples/multi-seed.yaml --seeds 0,1,2`,
then `podium compare` on its output (a few minutes on 2 CPU cores)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.integration
def test_multi_seed_example(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "seeds"
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(ROOT / "recipes/examples/multi-seed.yaml"),
                        "--seeds", "0,1,2", "--output", str(out), "--no-progress"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    reports = {s: json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in (0, 1, 2)}
    status = {s: {x["name"]: x["status"] for x in rep["stages"]} for s, rep in reports.items()}
    # `data` (a pinned tasks stage) ran on seed 0 only; every seed trained its own model.
    assert [status[s]["data"] for s in (0, 1, 2)] == ["ran", "cached", "cached"]
    assert all(status[s]["sft"] == "ran" for s in (0, 1, 2))
    seeds_of = [json.loads((out / f"seed-{s}" / "sft" / "stage.json").read_text())["config"]["seed"] for s in (0, 1, 2)]
    assert seeds_of == [0, 1, 2]
    acc = {s: {x["name"]: x["metrics"].get("accuracy") for x in rep["stages"]} for s, rep in reports.items()}
    compare = json.loads((out / "compare.json").read_text())
    (diff,) = [d for d in compare["groups"][0]["differences"] if d["metric"] == "accuracy"]
    assert (diff["stage"], diff["minus"]) == ("eval_sft", "eval_base")
    assert diff["values"] == pytest.approx([acc[s]["eval_sft"] - acc[s]["eval_base"] for s in (0, 1, 2)])
    assert (out / "compare.md").exists() and (out / "compare_differences.png").exists()
    r = subprocess.run([sys.executable, "-m", "podium", "compare", str(out), "--no-plots"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and "eval_sft − eval_base" in r.stdout
