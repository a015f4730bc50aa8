"""The per-iteration table of a self-play stage, for the run report and the model card.

One row per policy, from the stage's metrics (podium.selfplay.held_out names them): iteration 0 is
the starting policy; then each iteration's win rate against the baseline, against the previous
iteration on the same prompts, and its paired gain over the previous iteration's win rate, each with
its 95 % bootstrap interval over the held-out prompts; the held-out accuracy and the training pairs.
"""

from __future__ import annotations

import re

from podium.cards.run_info import RunInfo

ITER_KEY = re.compile(r"^iter(\d+)/(.+)$")
COLUMNS = (("win_rate", "win rate vs baseline"), ("win_rate_vs_previous", "vs previous iteration"),
           ("gain", "paired gain over previous"))


def iterations(metrics: dict) -> dict[int, dict[str, float]]:
    """{t: {name: value}} of a stage's `iter{t}/name` metrics."""
    out: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        m = ITER_KEY.match(key)
        if m and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.setdefault(int(m.group(1)), {})[m.group(2)] = float(value)
    return dict(sorted(out.items()))


def cell(row: dict[str, float], name: str, signed: bool = False) -> str:
    """`value [low, high]` in percent (points for a signed difference); — when absent."""
    if name not in row:
        return "—"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    text = fmt.format(100 * row[name])
    if f"{name}_low" in row:
        text += f" [{fmt.format(100 * row[name + '_low'])}, {fmt.format(100 * row[name + '_high'])}]"
    return text


def iteration_table(metrics: dict) -> str:
    """The markdown table of one self-play stage's iterations; '' when it has no per-iteration win rates."""
    rows = iterations(metrics)
    if not any("win_rate" in r for r in rows.values()):
        return ""
    has_acc = any("accuracy" in r for r in rows.values())
    head = ["iteration", *(label + " (%)" for _, label in COLUMNS)] + (["accuracy (%)"] if has_acc else []) + ["pairs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t, r in rows.items():
        cells = [f"{t} (start)" if t == 0 else str(t)]
        cells += [cell(r, name, signed=name == "gain") for name, _ in COLUMNS]
        if has_acc:
            cells.append(f"{100 * r['accuracy']:.1f}" if "accuracy" in r else "—")
        cells.append(f"{int(r['pairs'])}" if "pairs" in r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def iteration_sections(run: RunInfo, heading: str = "###") -> list[str]:
    """Markdown lines: one table per self-play stage with per-iteration results (for report.md and the card)."""
    lines: list[str] = []
    for s in run.stages:
        table = iteration_table(s.metrics)
        if table:
            n = next((int(v) for k, v in s.metrics.items() if k.endswith("/eval_prompts")), None)
            prompts = f"the same {n} held-out prompts" if n else "the same held-out prompts"
            lines += [f"{heading} `{s.name}`: self-play iterations", "",
                      f"Every policy answers {prompts} with the same sampling seed; "
                      "95 % bootstrap intervals over the prompts in brackets. The paired gain is the mean per-prompt "
                      "difference between this iteration's and the previous one's win rate against the baseline.",
                      "", table, ""]
    return lines
