"""`podium train` entry for subprocess tests: installs the stand-in losses until podium.losses has LOSSES."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tests.pref_helpers import FALLBACK_LOSSES

import podium.losses as pl

if not hasattr(pl, "LOSSES"):
    pl.LOSSES = FALLBACK_LOSSES

from podium.training.train_cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
