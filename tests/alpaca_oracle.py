"""alpaca_eval 0.6.6 as a test oracle, in a venv of its own (a test helper).

alpaca_eval 0.6.6 installs beside podium's dev dependencies but does not import there: it
needs `pkg_resources`, which setuptools >= 81 no longer ships, and it was released against
pandas 2.2 and scikit-learn 1.6. So it gets its own venv, built once and cached under
$PODIUM_ORACLE_CACHE (default ~/.cache/podium/oracles), with those versions pinned, and runs in
a subprocess. Its `get_length_controlled_winrate` downloads df_gamed.csv from the Hub; the
driver points that download at a local file instead (no Hub access is needed or made).

`run_alpaca_eval(jobs)` skips the calling test only when the package registry cannot be reached.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.oracle_venvs import cache_dir, registry_unreachable

PINS = ["alpaca-eval==0.6.6", "setuptools<81", "pandas<2.3", "scikit-learn<1.7", "numpy<2.3"]
VENV_NAME = "alpaca_eval-0.6.6"

DRIVER = r'''
import json, sys
import pandas as pd
import alpaca_eval.metrics.glm_winrate as glm

jobs = json.load(sys.stdin)
out = []
for job in jobs:
    glm.hf_hub_download = lambda *a, _path=job["df_gamed"], **k: _path
    annotations = pd.read_json(job["annotations"])
    metrics = glm.get_length_controlled_winrate(annotations, save_weights_dir=None, is_warn_extreme_changes=False)
    out.append({k: float(v) for k, v in metrics.items()})
print("ORACLE" + json.dumps(out))
'''


def venv_python() -> Path:
    """The oracle venv's python, building the venv first if needed (once; concurrent callers wait)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    python = root / VENV_NAME / "bin" / "python"
    with open(root / f"{VENV_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists():
            return python
        building = root / f"{VENV_NAME}.building"
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        res = subprocess.run(pip + PINS, capture_output=True, text=True)
        if res.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            reason = registry_unreachable(root / "probe", "alpaca-eval==0.6.6")
            if reason:
                pytest.skip(f"alpaca_eval oracle: the package registry is unreachable ({reason})")
            raise RuntimeError(f"building the alpaca_eval 0.6.6 venv failed:\n{res.stderr[-3000:]}")
        os.replace(building, root / VENV_NAME)
        # A venv's scripts name its folder; the python binary itself does not, so it runs from the new place.
        return python


def run_alpaca_eval(jobs: list[dict]) -> list[dict]:
    """alpaca_eval 0.6.6's `get_length_controlled_winrate` for each {"annotations": path, "df_gamed": path}."""
    res = subprocess.run([str(venv_python()), "-c", DRIVER], input=json.dumps(jobs), capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "unused"})
    line = next((s for s in res.stdout.splitlines() if s.startswith("ORACLE")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"alpaca_eval oracle failed:\n{res.stderr[-3000:]}")
    return json.loads(line[len("ORACLE"):])
