"""`podium train CONFIG.yaml [key=value ...]` as a module, for launchers.

    accelerate launch --config_file configs/accelerate/fsdp.yaml -m podium.cli.train dpo.yaml

CONFIG holds the `train` stage keys plus `output_dir`; `key=value` overrides (values parsed as
YAML, dotted keys reach nested settings: `lora.r=8`) win over the file. Errors are those of
`podium train` (file:line, field; exit status 2).
"""

from __future__ import annotations

import sys

from podium.cli.dispatch import main as podium_main


def main(argv: list[str] | None = None) -> int:
    return podium_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
