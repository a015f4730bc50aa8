"""`podium generate CONFIG.yaml [key=value ...]`: run the generate stage alone.

CONFIG.yaml holds the `generate` stage's keys (see GenerateConfig) plus `output_dir`;
`key=value` arguments override them (values parsed as YAML: `n=4`, `temperature=0`).

    model: runs/quick/sft
    prompts: data/prompts.jsonl
    n: 4
    temperature: 0.8
    max_new_tokens: 64
    output_dir: runs/quick/generate
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from podium.errors import ConfigError, PodiumError


def load_config(path: str, overrides: list[str]) -> tuple[dict, dict[str, int]]:
    """YAML mapping plus `key=value` overrides, and the line of each top-level key (for errors)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    lines = (
        {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    )
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        data[key] = yaml.safe_load(value)
    return data, lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of `podium generate`."""
    ap = argparse.ArgumentParser(prog="podium generate", description="Sample K responses per prompt.")
    ap.add_argument("config", help="YAML with the generate stage's keys plus output_dir")
    ap.add_argument("overrides", nargs="*", help="key=value overrides")
    args = ap.parse_args(argv)
    try:
        return run(args.config, args.overrides)
    except PodiumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(config_path: str, overrides: list[str]) -> int:
    from podium.generation.stage import GenerateConfig
    from podium.stages import run_stage

    data, lines = load_config(config_path, overrides)
    output_dir = data.pop("output_dir", None)
    if not output_dir:
        raise ConfigError(f"{config_path}: missing field 'output_dir' (where samples.jsonl goes)")
    try:
        cfg = GenerateConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(config)"
            top = str(err["loc"][0]) if err["loc"] else ""
            where = f"{config_path}:{lines[top]}" if top in lines else config_path
            problems.append(f"{where}: field {field!r}: {err['msg']}")
        raise ConfigError("; ".join(problems)) from None
    metrics = run_stage("generate", cfg, output_dir)
    print(json.dumps({"samples": str(Path(output_dir) / "samples.jsonl"), **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
