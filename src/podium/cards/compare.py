"""Compare runs across seeds: every metric as a mean with a 95 % confidence interval.

    compare_runs(["runs/q/seed-0", "runs/q/seed-1", "runs/q/seed-2"])   # one group: one recipe, 3 seeds
    compare_runs({"lr 1e-3": [...], "lr 3e-4": [...]})                  # groups: recipes that differ in one setting
    write_compare(result, "runs/q")   # compare.json, compare.md, compare_*.png

For each group (the runs of one recipe, one per seed) it reports, from each run's report.json:
- every numeric stage metric: mean, sample std, Student-t interval, and the per-seed values;
- paired differences between evaluations of the same task (same eval settings but the model):
  later stage − earlier stage, e.g. eval_dpop − eval_sft, seed by seed;
- paired differences between consecutive self-play iterations (`iter2/win_rate − iter1/win_rate`).
Between groups, each metric both groups have: the difference of the means, paired by seed when
both groups ran the same seeds, Welch's interval otherwise. The math is podium.evaluation.intervals.

A run's seed is read from its own record (report.json's `seed`, the recipe seed the run used), never
from its folder's name; a run dir from before podium recorded it has an unknown seed ("?", compared
unpaired until a `podium run` of it, fully cached, rewrites its report.json). A group may not hold the
same run twice (the same folder, or two runs of one seed): a zero-width interval over copies of one
number is not evidence.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

from podium.cards.run_info import RunInfo, load_run
from podium.errors import PodiumError
from podium.evaluation.intervals import CONFIDENCE, Interval, mean_interval, paired_difference, welch_difference
from podium.files import temp_path, write_json, write_text
from podium.rundir import SEED_DIR, read_run_report

ITER = re.compile(r"^iter(\d+)/(.+)$")
ALREADY_PER_ITERATION = ("gain", "win_rate_vs_previous")
# Settings of an eval stage that do not change what is measured: two evals that differ only in
# these measure the same task.
EVAL_NON_TASK_KEYS = ("model", "batch_size")
PLOTTED = ("accuracy", "win_rate")


def run_seed(run_dir: Path) -> int | None:
    """The recipe seed a run used, from its report.json (None when it does not say)."""
    seed = read_run_report(run_dir).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def check_distinct(run_dirs: Sequence[Path], seeds: list[int | None], label: str) -> None:
    """Refuse a group that holds one run twice: the same folder, or two runs of the same seed."""
    seen: dict[Path, Path] = {}
    for d in run_dirs:
        real = Path(d).resolve()
        if real in seen:
            raise PodiumError(f"compare: run {d} is given twice (as {seen[real]} and {d}) in group {label!r}; each run "
                              "counts once")
        seen[real] = Path(d)
    by_seed: dict[int, Path] = {}
    for d, seed in zip(run_dirs, seeds):
        if seed is None:
            continue
        if seed in by_seed:
            raise PodiumError(f"compare: runs {by_seed[seed]} and {d} of group {label!r} both ran seed {seed} (their "
                              "report.json says so); a group holds one run per seed: give the other as its own group "
                              "(LABEL=DIR) or run another seed")
        by_seed[seed] = Path(d)


def expand_run_dirs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Run dirs from paths: a folder with report.json is a run; a folder of `seed-N` runs gives each of them."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / "report.json").is_file():
            runs.append(p)
            continue
        seeds = sorted((d for d in p.glob("seed-*") if SEED_DIR.match(d.name) and (d / "report.json").is_file()),
                       key=lambda d: int(d.name[5:]))
        if not seeds:
            raise PodiumError(f"{p}: not a run dir (no report.json) and no seed-N run dirs inside")
        runs.extend(seeds)
    return runs


def numeric_metrics(run: RunInfo) -> dict[tuple[str, str], float]:
    """{(stage, metric): value} for every finite number a stage reported."""
    out = {}
    for s in run.stages:
        for k, v in s.metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[(s.name, k)] = float(v)
    return out


def drop_aliases(keys: list[tuple[str, str]], tables: list[dict]) -> list[tuple[str, str]]:
    """Leave out `metric/x` where the same stage's `metric` has the same value in every run
    (an eval of one task reports `accuracy` and `accuracy/<task>`: one number, shown once)."""
    present = set(keys)
    return [(s, m) for s, m in keys
            if not ("/" in m and (s, m.split("/")[0]) in present
                    and all(t[(s, m)] == t[(s, m.split("/")[0])] for t in tables))]


def eval_signature(config: dict) -> str | None:
    """What an eval stage measures (its settings without the model); None when its config is unknown."""
    if not config:
        return None
    return json.dumps({k: v for k, v in config.items() if k not in EVAL_NON_TASK_KEYS}, sort_keys=True, default=str)


def paired_pairs(runs: list[RunInfo]) -> list[tuple[str, str, str]]:
    """(later, earlier, what) stage pairs whose metrics are compared seed by seed.

    Evals of the same task, in recipe order; `what` is "eval" for those. A self-play stage's
    consecutive iterations are added by `iteration_differences`.
    """
    first = runs[0]
    order = [s.name for s in first.stages]
    groups: dict[str, list[str]] = {}
    for s in first.by_kind("eval"):
        sig = eval_signature(s.config)
        if sig is not None:
            groups.setdefault(sig, []).append(s.name)
    pairs = []
    for names in groups.values():
        names.sort(key=order.index)
        pairs.extend((later, earlier, "eval") for earlier, later in combinations(names, 2))
    return pairs


def _summary(interval: Interval, values: list[float], **extra) -> dict:
    return {**extra, **interval.as_dict(), "excludes_zero": interval.excludes(0.0), "values": values}


def summarize_group(run_dirs: Sequence[Path], confidence: float = CONFIDENCE, label: str = "runs") -> dict:
    """Per-metric intervals and paired differences for the runs of one recipe (one per seed)."""
    seeds = [run_seed(d) for d in run_dirs]
    check_distinct(run_dirs, seeds, label)
    runs = [load_run(d) for d in run_dirs]
    tables = [numeric_metrics(r) for r in runs]
    common = [k for k in tables[0] if all(k in t for t in tables)]
    partial = sorted({k for t in tables for k in t} - set(common))
    keys = drop_aliases(common, tables)
    metrics = [_summary(mean_interval([t[k] for t in tables], confidence), [t[k] for t in tables],
                        stage=k[0], metric=k[1]) for k in keys]
    diffs = []
    for later, earlier, what in paired_pairs(runs):
        shared = [m for (s, m) in keys if s == later and (earlier, m) in tables[0] and (earlier, m) in keys]
        for m in shared:
            a, b = [t[(later, m)] for t in tables], [t[(earlier, m)] for t in tables]
            diffs.append(_summary(paired_difference(a, b, confidence), [x - y for x, y in zip(a, b)],
                                  stage=later, minus=earlier, metric=m, kind=what))
    diffs.extend(iteration_differences(keys, tables, confidence))
    return {"runs": [str(d) for d in run_dirs], "seeds": seeds, "metrics": metrics, "differences": diffs,
            "incomplete": [{"stage": s, "metric": m} for s, m in partial]}


def iteration_differences(keys, tables, confidence: float) -> list[dict]:
    """iter{t+1}/m − iter{t}/m of each self-play stage, seed by seed."""
    out = []
    for stage, metric in keys:
        m = ITER.match(metric)
        if not m:
            continue
        t, name = int(m.group(1)), m.group(2)
        prev = (stage, f"iter{t - 1}/{name}")
        # iteration 0 is the starting policy (its win rate: iteration 1's starting point); interval bounds are not
        # compared, nor metrics that already are a change from the previous iteration (their mean over seeds is in
        # the stage table: `iter{t}/gain`)
        if t < 1 or prev not in keys or name.endswith(("_low", "_high")) or name in ALREADY_PER_ITERATION:
            continue
        a, b = [tb[(stage, metric)] for tb in tables], [tb[prev] for tb in tables]
        out.append(_summary(paired_difference(a, b, confidence), [x - y for x, y in zip(a, b)],
                            stage=stage, metric=metric, minus_metric=prev[1], kind="iteration"))
    return out


def between_groups(a: dict, b: dict, confidence: float = CONFIDENCE) -> list[dict]:
    """Group a − group b for each (stage, metric) both report; paired by seed when the seeds match."""
    va = {(m["stage"], m["metric"]): m["values"] for m in a["metrics"]}
    vb = {(m["stage"], m["metric"]): m["values"] for m in b["metrics"]}
    paired = None not in a["seeds"] and a["seeds"] == b["seeds"]
    out = []
    for key in (k for k in va if k in vb):
        if paired:
            iv = paired_difference(va[key], vb[key], confidence)
        else:
            iv = welch_difference(va[key], vb[key], confidence)
        out.append(_summary(iv, [], stage=key[0], metric=key[1], method="paired" if paired else "welch"))
    return out


def compare_runs(runs: Sequence[str | os.PathLike] | Mapping[str, Sequence[str | os.PathLike]],
                 confidence: float = CONFIDENCE) -> dict:
    """The comparison (what compare.json holds) of one group of run dirs, or of labelled groups."""
    groups = dict(runs) if isinstance(runs, Mapping) else {"runs": list(runs)}
    if not groups:
        raise PodiumError("compare: no runs given")
    summaries = {label: summarize_group(expand_run_dirs(dirs), confidence, label) for label, dirs in groups.items()}
    everywhere: dict[Path, str] = {}
    for label, summary in summaries.items():
        for d in summary["runs"]:
            if (other := everywhere.setdefault(Path(d).resolve(), label)) != label:
                raise PodiumError(f"compare: run {d} is in groups {other!r} and {label!r}; a run belongs to one group")
    labels = list(summaries)
    between = []
    for i, j in combinations(range(len(labels)), 2):
        between.append({"group": labels[j], "minus": labels[i],
                        "differences": between_groups(summaries[labels[j]], summaries[labels[i]], confidence)})
    return {"confidence": confidence, "groups": [{"label": k, **v} for k, v in summaries.items()], "between": between}


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def interval_text(row: dict) -> str:
    if row["low"] is None:
        return f"{_fmt(row['mean'])} (n = {row['n']}: no interval)"
    return f"{_fmt(row['mean'])} ± {_fmt(row['half_width'])} [{_fmt(row['low'])}, {_fmt(row['high'])}]"


# Beyond this many paired differences between the evaluations of one task, compare.md and the plot show each
# evaluation against the task's first one (its baseline, e.g. eval_sft) only; compare.json keeps them all.
SHOWN_DIFFERENCES = 12


def shown_differences(group: dict) -> tuple[list[dict], int]:
    """The differences compare.md shows for `group`, and how many it leaves to compare.json."""
    diffs = group["differences"]
    evals = [d for d in diffs if d["kind"] == "eval"]
    if len(evals) <= SHOWN_DIFFERENCES:
        return diffs, 0
    later = {d["stage"] for d in evals}
    baselines = {d["minus"] for d in evals if d["minus"] not in later}  # evaluations no other one precedes
    kept = [d for d in diffs if d["kind"] != "eval" or d["minus"] in baselines]
    return kept, len(diffs) - len(kept)


def compare_markdown(result: dict) -> str:
    """compare.md: differences first (the claims), then every metric."""
    pct = round(100 * result["confidence"])
    lines = [f"# Comparison across seeds (mean ± {pct} % CI, Student t)", ""]
    for g in result["groups"]:
        seeds = ", ".join("?" if s is None else str(s) for s in g["seeds"])
        lines += [f"## {g['label']} ({len(g['runs'])} runs; seeds {seeds})", ""]
        shown, left = shown_differences(g)
        if shown:
            lines += ["| difference | metric | mean ± CI [low, high] | excludes 0 | per seed |", "|---|---|---|---|---|"]
            for d in shown:
                what = (f"{d['stage']} − {d['minus']}" if d["kind"] == "eval"
                        else f"{d['stage']}: {d['metric'].split('/')[0]} − {d['minus_metric'].split('/')[0]}")
                metric = d["metric"].split("/", 1)[1] if d["kind"] == "iteration" else d["metric"]
                per_seed = ", ".join(f"{v:+.4f}" for v in d["values"])
                lines.append(f"| {what} | {metric} | {interval_text(d)} | {'yes' if d['excludes_zero'] else 'no'} "
                             f"| {per_seed} |")
            if left:
                lines += ["", f"Each evaluation against its task's first one; the {left} differences between the "
                          "later evaluations are in compare.json."]
            lines.append("")
        lines += ["| stage | metric | mean ± CI [low, high] | std | per seed |", "|---|---|---|---|---|"]
        for m in g["metrics"]:
            per_seed = ", ".join(_fmt(v) for v in m["values"])
            lines.append(f"| {m['stage']} | {m['metric']} | {interval_text(m)} | {_fmt(m['std'])} | {per_seed} |")
        if g["incomplete"]:
            lines += ["", "Reported by only some runs (left out): "
                      + ", ".join(f"{x['stage']}/{x['metric']}" for x in g["incomplete"])]
        lines.append("")
    for b in result["between"]:
        lines += [f"## {b['group']} − {b['minus']}", "", "| stage | metric | difference ± CI [low, high] | excludes 0 | method |",
                  "|---|---|---|---|---|"]
        for d in b["differences"]:
            lines.append(f"| {d['stage']} | {d['metric']} | {interval_text(d)} | {'yes' if d['excludes_zero'] else 'no'} "
                         f"| {d['method']} |")
        lines.append("")
    return "\n".join(lines)


def _save_png(fig, path: Path) -> Path:
    """PNG bytes written via a temporary name and a rename, so readers never see half a file."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, dpi=100, format="png")
    tmp = temp_path(path)
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


def plot_compare(result: dict, out_dir: Path) -> list[Path]:
    """compare_<metric>.png (per-stage means with CI error bars and per-seed dots) and compare_differences.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    n_groups = len(result["groups"])
    for base in PLOTTED:
        rows = [(g["label"], m) for g in result["groups"] for m in g["metrics"]
                if m["metric"] == base or m["metric"].endswith("/" + base)]
        if not rows:
            continue
        names = list(dict.fromkeys(f"{m['stage']}" if m["metric"] == base else f"{m['stage']} {m['metric'].split('/')[0]}"
                                   for _, m in rows))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.4))
        for gi, g in enumerate(result["groups"]):
            offset = (gi - (n_groups - 1) / 2) * 0.2
            for m in g["metrics"]:
                if not (m["metric"] == base or m["metric"].endswith("/" + base)):
                    continue
                label = m["stage"] if m["metric"] == base else f"{m['stage']} {m['metric'].split('/')[0]}"
                x = names.index(label) + offset
                err = None if m["low"] is None else [[m["mean"] - m["low"]], [m["high"] - m["mean"]]]
                ax.errorbar([x], [m["mean"]], yerr=err, fmt="o", capsize=4, color=f"C{gi}",
                            label=g["label"] if n_groups > 1 and label == names[0] else None)
                ax.scatter([x + 0.06] * len(m["values"]), m["values"], s=10, color=f"C{gi}", alpha=0.4)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"{base} (mean, {round(100 * result['confidence'])} % CI)")
        if base == "win_rate":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if n_groups > 1:
            ax.legend(fontsize=8)
        written.append(_save_png(fig, out_dir / f"compare_{base}.png"))
        plt.close(fig)
    diffs = [(g["label"], d) for g in result["groups"] for d in shown_differences(g)[0]
             if d["metric"].split("/")[-1] in PLOTTED]
    if diffs:
        fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(diffs) + 1.2))
        for i, (_, d) in enumerate(diffs):
            err = None if d["low"] is None else [[d["mean"] - d["low"]], [d["high"] - d["mean"]]]
            ax.errorbar([d["mean"]], [i], xerr=err, fmt="o", capsize=4, color="C0")
        ax.set_yticks(range(len(diffs)), [difference_label(label, d, n_groups) for label, d in diffs], fontsize=8)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(6))
        ax.set_xlabel(f"paired difference (mean, {round(100 * result['confidence'])} % CI)")
        ax.invert_yaxis()
        written.append(_save_png(fig, out_dir / "compare_differences.png"))
        plt.close(fig)
    return written


def difference_label(group: str, d: dict, n_groups: int) -> str:
    if d["kind"] == "eval":
        text = f"{d['stage']} − {d['minus']} ({d['metric']})"
    else:
        text = f"{d['stage']} {d['metric'].split('/')[0]} − {d['minus_metric'].split('/')[0]} ({d['metric'].split('/', 1)[1]})"
    return f"{group}: {text}" if n_groups > 1 else text


def write_compare(result: dict, out_dir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
    """Write compare.json, compare.md and (with `plots`) compare_*.png into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(out / "compare.json", result), "markdown": write_text(out / "compare.md", compare_markdown(result))}
    if plots:
        for p in plot_compare(result, out):
            paths[p.stem] = p
    return paths
