"""`podium merge CONFIG.yml OUTPUT_DIR`: run a mergekit-style merge (or `--lora-adapter A --lora-base B OUT`).

    python -m podium.cli.merge CONFIG.yml OUTPUT_DIR      (the same, as a module)
"""

from __future__ import annotations

import argparse
import re
import sys

from podium.errors import PodiumError
from podium.merging.config import load_config
from podium.merging.executor import merge_lora, run_merge
from podium.ownership import command_output


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2GB, 500MB)")
    return int(float(m[1]) * 1024 ** " KMGT".index(m[2] or " "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podium merge", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="mergekit YAML config")
    parser.add_argument("output_dir")
    parser.add_argument("--lora-adapter", help="merge this PEFT LoRA adapter folder into --lora-base instead")
    parser.add_argument("--lora-base", help="base model of --lora-adapter (folder or Hub id)")
    parser.add_argument("--dtype", help="dtype for a LoRA merge (float32, bfloat16, float16)")
    parser.add_argument("--seed", type=int, help="seed for DARE's random drop (default: random_seed or 0)")
    parser.add_argument("--max-shard-size", type=parse_size, default="2GB")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing folder podium did not make "
                        "(files podium writes are replaced; no other file is deleted)")
    args = parser.parse_args(argv)
    if args.lora_adapter or args.lora_base:
        if not (args.lora_adapter and args.lora_base) or args.config:
            parser.error("a LoRA merge takes --lora-adapter, --lora-base and OUTPUT_DIR, no CONFIG")
    elif not args.config:
        parser.error("CONFIG is required")
    try:
        if args.lora_adapter:
            inputs, config = [args.lora_base, args.lora_adapter], {"lora_base": args.lora_base,
                                                                   "lora_adapter": args.lora_adapter}
        else:
            merge_cfg = load_config(args.config)
            inputs, config = [*merge_cfg.referenced_models(), args.config], {"config": merge_cfg.raw}
        config.update(dtype=args.dtype, seed=args.seed, max_shard_size=args.max_shard_size)
        # A new folder or one podium made, never one of the merge's inputs; one merge per output folder at a
        # time (locked from beside it: the folder is replaced when published), never inside a run dir in use.
        with command_output(args.output_dir, "merge", config, inputs, args.overwrite, what="merge output") as record:
            if args.lora_adapter:
                metrics = merge_lora(args.lora_base, args.lora_adapter, args.output_dir, dtype=args.dtype,
                                     max_shard_size=args.max_shard_size)
            else:
                metrics = run_merge(merge_cfg, args.output_dir, seed=args.seed, max_shard_size=args.max_shard_size)
            record.update(metrics)
    except PodiumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"merged {int(metrics['num_tensors'])} tensors ({int(metrics['num_layers'])} layers) into "
          f"{args.output_dir} in {metrics['merge_seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
