"""What the oracle venvs (tests/alpaca_oracle.py, tests/pairrm_oracle.py) share: where they are cached, and whether
a failed install means the package registry is out of reach (a reason to skip) or a real failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("PODIUM_ORACLE_CACHE", Path.home() / ".cache" / "podium" / "oracles"))


def registry_unreachable(scratch: Path, requirement: str) -> str | None:
    """pip's own account of a failed fetch of `requirement` ("Could not fetch URL ...: connection error"), or None
    when the registry answered (then a failed install is a real failure, not a reason to skip)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "-vv", "--no-deps", "-d", str(scratch),
                            requirement], capture_output=True, text=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if probe.returncode == 0:
        return None
    fetch = [line for line in probe.stdout.splitlines() + probe.stderr.splitlines() if "Could not fetch URL" in line]
    return fetch[0].strip() if fetch else None
