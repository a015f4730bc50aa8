"""`podium train CONFIG.yaml [key=value ...]`: run the train stage alone.

CONFIG holds the `train` stage keys plus `output_dir`; `key=value` overrides (values parsed as
YAML, dotted keys reach nested settings: `lora.r=8`) win over the file. Parsing and error
messages (file:line, field) are the shared ones of `podium.config`; this module is the entry
point for launchers (`accelerate launch -m podium.training.train_cli CONFIG.yaml ...`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from podium.cli import main as podium_main

    return podium_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
