"""`podium preview RECIPE.yaml STAGE [--rows N] [--json] [--model DIR] [--output DIR] [key=value ...]`: what training sees.

Prints, for the first N rows of each source of STAGE, the text as the stage renders and tokenises it,
the trained (loss) span marked ⟦ ⟧; `--json` writes one object a line (podium.preview).
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.text import Text

from podium.preview import preview_stage

OPEN, CLOSE = "⟦", "⟧"  # around the tokens in the loss


def show(entries: list[dict], console: Console) -> None:
    for e in entries:
        console.rule(f"{e['source']} · {e['row']}", style="dim")
        if "skipped" in e:
            console.print(f"(skipped: {e['skipped']})", markup=False, highlight=False)
        elif "spans" in e:
            text = Text()
            for piece, trained in e["spans"]:
                text.append(f"{OPEN}{piece}{CLOSE}" if trained else piece, style="bold green" if trained else None)
            console.print(text, highlight=False)
        else:
            for key in ("prompt", "chosen", "rejected", "answer"):
                if key in e:
                    console.print(Text(f"{key}: ", style="bold"), Text(str(e[key])), sep="", highlight=False)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="podium preview", description="Show the first rows of each data source of a "
                                "recipe stage exactly as training sees them (rendered, trained span marked).")
    p.add_argument("recipe")
    p.add_argument("stage")
    p.add_argument("--rows", type=int, default=3, help="rows of each source (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object a row: source, row, text and trained (SFT), "
                   "or prompt, chosen, rejected (pairs), or prompt (prompts)")
    p.add_argument("--model", help="render with this model's tokenizer instead of the stage model's (a local folder)")
    p.add_argument("--output", "-o", help="the run dir, as for podium run (earlier stages' outputs are read from it)")
    p.add_argument("overrides", nargs="*", help="key=value, as for podium run")
    args = p.parse_intermixed_args(argv)
    if args.rows < 1:
        p.error("--rows must be at least 1")
    entries = preview_stage(args.recipe, args.stage, rows=args.rows, overrides=args.overrides, model=args.model,
                            output=args.output)
    if args.json:
        for e in entries:
            print(json.dumps({k: v for k, v in e.items() if k != "spans"}, ensure_ascii=False))
    else:
        show(entries, Console())
    return 0
