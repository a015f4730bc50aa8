"""The README's quickstart, end to end, on 2 CPU cores: it runs and shows its effects.

How long it takes is printed (`-s`), never asserted: a loaded CI machine is no measure of podium.

This is one seed; the same effects over seeds 0–2 and held-out seeds 3–5, as means with 95 % confidence
intervals, are in the README ("Measured", `benchmarks/multi_seed.py`).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.integration
def test_quickstart(tmp_path):
    t0 = time.time()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(ROOT / "recipes/quickstart.yaml"),
                        "--output", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    minutes = (time.time() - t0) / 60
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    # SFT stops at its target (35 % on held-out train-split prompts), leaving room to improve.
    assert stages["sft"]["metrics"]["target_reached"] == 1.0
    sft_acc = stages["eval_sft"]["metrics"]["accuracy"]
    assert 0.35 <= sft_acc <= 0.75, f"SFT accuracy {sft_acc:.3f} outside [0.35, 0.75]"
    dpop_acc = stages["eval_dpop"]["metrics"]["accuracy"]
    assert dpop_acc >= sft_acc + 0.08, f"DPOP on SGD pairs: {sft_acc:.3f} -> {dpop_acc:.3f}, less than +8 points"
    sppo = stages["sppo"]["metrics"]
    assert sppo["win_rate"] > 0.5, f"the last self-play iteration does not beat SFT: {sppo['win_rate']}"
    # Every iteration beats the one before on the same held-out prompts and samples: the paired gain's 95 %
    # bootstrap interval over the prompts lies above 0 (iteration 1's "before" is the DPOP model).
    for t in (1, 2):
        gain = (sppo[f"iter{t}/gain"], sppo[f"iter{t}/gain_low"], sppo[f"iter{t}/gain_high"])
        assert gain[1] > 0, f"self-play iteration {t} − {t - 1}: paired win-rate gain {gain} (mean, 95 % interval)"
    assert "accuracy" in stages["eval_merge"]["metrics"] and "accuracy" in stages["eval_sppo"]["metrics"]
    assert (tmp_path / "run" / "card" / "README.md").exists() and (tmp_path / "run" / "report.md").exists()
    print(f"quickstart: {minutes:.1f} min")
    # A second run is fully cached.
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(ROOT / "recipes/quickstart.yaml"),
                        "--output", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True, env=env)
    assert r.returncode == 0
    again = json.loads((tmp_path / "run" / "report.json").read_text())
    assert all(s["status"] == "cached" for s in again["stages"])
