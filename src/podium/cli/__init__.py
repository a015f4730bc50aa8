"""The `podium` command: every argument parser and `main()` of podium lives in this package.

Each command module turns arguments into one call of a library function and prints its result;
no library module imports `podium.cli` (tests/unit/test_architecture.py). Entry point:
`podium = podium.cli:main`; `python -m podium` runs the same.
"""

from podium.cli.dispatch import main

__all__ = ["main"]
