"""`podium train` entry for subprocess tests (python path set up from the worktree)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from podium.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
