"""`podium judge --judge KIND --model DIR --data CANDIDATES.jsonl --output OUT.jsonl`.

Judges candidate sets ({"prompt", "responses": [...]} per line) with any judge kind and writes each row with
`scores` (the judge's per-response scores) and `probabilities` (the K x K matrix P): podium.judging.candidates.
Prints a one-line JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from podium.errors import ConfigError
from podium.judging.build import JudgeSpec
from podium.judging.candidates import judge_file


def judge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podium judge", description="Score candidate sets with a judge (PairRM, a reward "
                                "model, a GPM or a task verifier), as llm-blender's rank does for PairRM.")
    p.add_argument("--judge", required=True, choices=["pairrm", "gpm", "reward", "verifier"], help="judge kind")
    p.add_argument("--model", default=None, help="PairRM checkpoint (default llm-blender/PairRM), or the reward/GPM "
                   "folder or Hub id")
    p.add_argument("--data", required=True, help='JSONL of {"prompt": text or messages, "responses": [...]} '
                   "(plus answer and task for the verifier)")
    p.add_argument("--output", required=True, help="JSONL written with scores and probabilities added")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per forward pass (default 64)")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="pairrm: padded tokens per forward pass")
    p.add_argument("--pairrm-mode", choices=["sppo", "pairwise"], default=None, help="pairrm: how P is made from C")
    p.add_argument("--prompt-template", default=None, help="pairrm: render prompts with this model's chat template, "
                   "as the SPPO code does with the policy's")
    p.add_argument("--gpm-probability", choices=["released", "loss"], default=None)
    p.add_argument("--tau", type=float, default=None, help="gpm: temperature")
    p.add_argument("--max-length", type=int, default=None, help="reward/gpm: longest sequence scored")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = judge_parser().parse_args(argv)
    settings = {"kind": args.judge, "model": args.model, "batch_size": args.batch_size,
                "max_batch_tokens": args.max_batch_tokens, "pairrm_mode": args.pairrm_mode,
                "prompt_template": args.prompt_template, "gpm_probability": args.gpm_probability, "tau": args.tau,
                "max_length": args.max_length}
    try:
        spec = JudgeSpec(**{k: v for k, v in settings.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"podium judge: {first['msg']}".replace("Value error, ", "")) from None
    summary = judge_file(spec, args.data, args.output, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0
