"""Run report: report.md next to report.json, with PNG plots under RUN_DIR/report/.

Plots (matplotlib, Agg backend, so no display is needed):
- `<stage>_training.png`: loss and reward margin per optimizer step, from each training
  stage's metrics.jsonl (keys `loss` and `rewards/margins`; missing series are skipped);
- `accuracy.png`: accuracy per stage, from stage metrics `accuracy` or `accuracy/<task>`;
- `win_rate.png`: win rate per self-play iteration, from stage metrics `iterN/win_rate`
  (and `iterN/lc_win_rate`), followed by each self-play stage's per-iteration table
  (podium.cards.iterations: win rates against the baseline and the previous iteration, paired gains).

A table "Hardware utilisation" gives each training stage's median tokens/s, achieved model FLOP/s and
MFU over its steps (keys `tokens_per_second`, `flops_per_second`, `mfu` of metrics.jsonl; the FLOP
count and the peak are `podium.training.flops`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from podium.cards.iterations import iteration_sections
from podium.cards.run_info import RunInfo, StageInfo, load_run
from podium.files import temp_path, write_text
from podium.rundir import PLOTS_DIR, REPORT_MD, require_run_dir

STEP_SERIES = (("loss", "loss"), ("rewards/margins", "reward margin"))


def pyplot():
    import matplotlib  # slow to import and only needed when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, path: Path) -> Path:
    """Lay out, write as PNG via a temporary name and a rename (readers never see half a file), and close."""
    fig.tight_layout()
    tmp = temp_path(path)
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_training(stage: StageInfo, path: Path) -> Path | None:
    """Loss and reward margin against step for one stage; None when its metrics.jsonl has neither."""
    series = []
    for key, label in STEP_SERIES:
        points = [(row.get("step", i), row[key]) for i, row in enumerate(stage.steps)
                  if isinstance(row.get(key), (int, float))]
        if points:
            series.append((label, points))
    if not series:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.2), squeeze=False)
    for ax, (label, points) in zip(axes[0], series):
        ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{stage.name}: {label}")
        ax.grid(alpha=0.3)
    return save_figure(plt, fig, path)


def accuracy_points(run: RunInfo) -> dict[str, dict[str, float]]:
    """{task: {stage: accuracy}} in stage order; a bare `accuracy` metric is task "accuracy"."""
    out: dict[str, dict[str, float]] = {}
    for s in run.stages:
        for key, value in s.metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "accuracy":
                # The overall accuracy repeats the per-task ones unless it is the only one.
                if not any(k.startswith("accuracy/") for k in s.metrics):
                    out.setdefault("accuracy", {})[s.name] = float(value)
            elif key.startswith("accuracy/"):
                out.setdefault(key.split("/", 1)[1], {})[s.name] = float(value)
    return out


def plot_accuracy(run: RunInfo, points: dict[str, dict[str, float]], path: Path) -> Path | None:
    """Bars of `points` ({task: {stage: accuracy}}, from `accuracy_points`) in the run's stage order."""
    if not points:
        return None
    stages = [s.name for s in run.stages if any(s.name in v for v in points.values())]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(stages) + 2), 3.2))
    width = 0.8 / len(points)
    for j, (task, by_stage) in enumerate(points.items()):
        xs = [i + j * width for i, name in enumerate(stages) if name in by_stage]
        ax.bar(xs, [by_stage[name] for name in stages if name in by_stage], width=width, label=task)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(stages))], stages)
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy per stage")
    ax.legend(fontsize=8)
    return save_figure(plt, fig, path)


def win_rate_points(run: RunInfo) -> dict[str, dict[int, float]]:
    """{"win_rate"|"lc_win_rate": {iteration: value}} from `iterN/...` metrics of any stage."""
    out: dict[str, dict[int, float]] = {}
    for s in run.stages:
        for key, value in s.metrics.items():
            m = re.fullmatch(r"iter(\d+)/(lc_win_rate|win_rate)", key)
            if m and isinstance(value, (int, float)):
                out.setdefault(m.group(2), {})[int(m.group(1))] = float(value)
    return out


def plot_win_rate(points: dict[str, dict[int, float]], path: Path) -> Path | None:
    """Lines of `points` ({name: {iteration: win rate}}, from `win_rate_points`)."""
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, by_iter in points.items():
        its = sorted(by_iter)
        ax.plot(its, [by_iter[i] for i in its], marker="o", label=name)
    ax.set_xlabel("self-play iteration")
    ax.set_ylabel("win rate")
    ax.set_xticks(sorted({i for v in points.values() for i in v}))
    ax.set_title("win rate per iteration")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(plt, fig, path)


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def stage_table(run: RunInfo) -> str:
    lines = ["| Stage | Kind | Status | Seconds | Metrics |", "|---|---|---|---:|---|"]
    for s in run.stages:
        metrics = ", ".join(f"{k}={fmt(v)}" for k, v in s.metrics.items()) or "—"
        seconds = fmt(float(s.seconds)) if isinstance(s.seconds, (int, float)) else "—"
        lines.append(f"| `{s.name}` | {s.kind or '—'} | {s.status or '—'} | {seconds} | {metrics} |")
    return "\n".join(lines)


def median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def utilisation_table(run: RunInfo) -> str | None:
    """Median tokens/s, model FLOP/s and MFU per training stage (None when no stage logged MFU)."""
    lines = []
    for s in run.stages:
        rows = [r for r in s.steps if isinstance(r.get("mfu"), (int, float))]
        if not rows:
            continue
        tps = [r["tokens_per_second"] for r in rows if isinstance(r.get("tokens_per_second"), (int, float))]
        flops = median([r["flops_per_second"] for r in rows])
        mfu = median([r["mfu"] for r in rows])
        peak = flops / mfu if mfu else float("nan")
        lines.append(f"| `{s.name}` | {len(rows)} | {fmt(median(tps)) if tps else '—'} | {flops / 1e9:.3g} | "
                     f"{peak / 1e9:.3g} | {100 * mfu:.1f} % |")
    if not lines:
        return None
    return "\n".join(["| Stage | Steps | Tokens/s | Model GFLOP/s | Peak GFLOP/s | MFU |",
                      "|---|---:|---:|---:|---:|---:|", *lines])


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write RUN_DIR/report.md and its plots (RUN_DIR/report/*.png); returns the report's path.

    Only into a podium run dir: another folder's report.md is not overwritten (podium.rundir.require_run_dir).
    """
    run = load_run(require_run_dir(run_dir, "write report.md"))
    plots_dir = run.run_dir / PLOTS_DIR
    plots_dir.mkdir(exist_ok=True)
    lines = [f"# Run report: {run.run_dir.resolve().name}", ""]
    if run.recipe is not None:
        lines += [f"Recipe: `{run.recipe}`", ""]
    lines += ["## Stages", "", stage_table(run) if run.stages else "No stages recorded.", ""]

    training = [(s, plot_training(s, plots_dir / f"{s.name}_training.png")) for s in run.stages if s.steps]
    training = [(s, p) for s, p in training if p is not None]
    if training:
        lines += ["## Training curves", ""]
        for s, p in training:
            last = s.steps[-1]
            summary = ", ".join(f"{k}={fmt(last[k])}" for k, _ in STEP_SERIES if k in last)
            lines += [f"### `{s.name}`", "", f"![{s.name} training]({p.relative_to(run.run_dir).as_posix()})", "",
                      f"Last step {last.get('step', len(s.steps))}: {summary}", ""]
    utilisation = utilisation_table(run)
    if utilisation:
        lines += ["## Hardware utilisation", "", "Medians over the steps; MFU = model FLOP/s / the peak matmul rate "
                  "podium measured on this machine (`podium.training.flops`).", "", utilisation, ""]
    acc_points = accuracy_points(run)
    acc = plot_accuracy(run, acc_points, plots_dir / "accuracy.png")
    if acc:
        lines += ["## Accuracy per stage", "", f"![accuracy]({acc.relative_to(run.run_dir).as_posix()})", ""]
        for task, by_stage in acc_points.items():
            lines.append(f"- {task}: " + ", ".join(f"`{k}` {v:.3f}" for k, v in by_stage.items()))
        lines.append("")
    win_points = win_rate_points(run)
    win = plot_win_rate(win_points, plots_dir / "win_rate.png")
    if win:
        lines += ["## Win rate per self-play iteration", "", f"![win rate]({win.relative_to(run.run_dir).as_posix()})",
                  ""]
        for name, by_iter in win_points.items():
            lines.append(f"- {name}: " + ", ".join(f"iter {i}: {100 * v:.1f} %" for i, v in sorted(by_iter.items())))
        lines.append("")
    lines += iteration_sections(run)
    out = run.run_dir / REPORT_MD
    return write_text(out, "\n".join(lines))
