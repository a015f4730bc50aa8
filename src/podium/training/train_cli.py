"""`podium train CONFIG.yaml [key=value ...]`: run the train stage alone.

CONFIG holds the `train` stage keys plus `output_dir`; `key=value` overrides (values parsed as
YAML, dotted keys reach nested settings: `lora.r=8`) win over the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from podium.errors import ConfigError, PodiumError


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value) if value != "" else ""


def load_config(path: str, overrides: list[str]) -> tuple[dict, Path]:
    """The stage settings and output_dir from CONFIG plus overrides."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of settings")
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a mapping")
        node[keys[-1]] = value
    if "output_dir" not in raw:
        raise ConfigError(f"{p}: missing field 'output_dir' (where the trained model goes)")
    out = Path(raw.pop("output_dir"))
    return raw, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podium train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML file with the train stage keys and output_dir")
    parser.add_argument("overrides", nargs="*", help="key=value settings that override the file")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from podium.stages import run_stage
        from podium.training.train import TrainConfig

        raw, out = load_config(args.config, args.overrides)
        try:
            cfg = TrainConfig.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "(config)"
            raise ConfigError(f"{args.config}: field {field!r}: {err['msg']}") from None
        metrics = run_stage("train", cfg, out)
    except PodiumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
