"""Drawing 100k rows from a 2M-row dataset saved with `save_to_disk`: time and peak RSS (issue 23, item 6).

The dataset has the shape of HuggingFaceH4/stack-exchange-preferences (a question and a list of answers with
pm_score, ~0.8 KB a row, ~1.6 GB on disk), built once under --root. Each measurement runs in a fresh child
process; memory is its peak RSS over the draw (VmHWM, reset after imports) and the growth over its RSS after
imports, as the other benchmarks report it (side_by_side.py). The bound of the issue: peak RSS under 1.5 GB, and the growth under
3x the drawn rows' size (their published rows as JSON text, UTF-8 bytes).

- `podium`: `build_mixture([{path, count: 100000, format: stack_exchange}], use="sft")`, podium's draw (row
  indices, then the drawn rows read batch by batch from the Arrow files).
- `materialise`: what podium did before, every row of the dataset as a Python dict, then the draw; run on the
  first --old-rows rows only (2M dicts would not fit this shared machine) and scaled to 2M rows linearly.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/large_source_draw.py [--rows 2000000] [--draw 100000]

One JSON line goes to benchmarks/results/large_source_draw.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import append_result, machine  # noqa: E402

WORDS = "the a of to and in is it you that was for on are with as his they be at one have this from".split()


def status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> float:
    """Start measuring the peak here (Linux: "5" to /proc/self/clear_refs resets VmHWM); returns RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def rss_mb() -> float:
    return status_mb("VmHWM")


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build(folder: Path, rows: int) -> None:
    """A stack-exchange-preferences-shaped dataset of `rows` rows, saved with save_to_disk (skipped if present)."""
    import datasets

    if (folder / "dataset_info.json").exists():
        return
    features = datasets.Features({
        "qid": datasets.Value("int64"), "question": datasets.Value("string"),
        "answers": datasets.List({"answer_id": datasets.Value("int64"), "pm_score": datasets.Value("int64"),
                                  "selected": datasets.Value("bool"), "text": datasets.Value("string")}),
        "date": datasets.Value("string")})

    def rows_of(shards):  # datasets hands each job its list of shards
        for shard in shards:
            rng = random.Random(shard)
            for i in range(shard * chunk, min(rows, (shard + 1) * chunk)):
                yield {"qid": i, "question": f"question {i}: " + text(rng, 60), "date": "2012/03/01",
                       "answers": [{"answer_id": 3 * i + k, "pm_score": rng.randint(0, 9), "selected": k == 0,
                                    "text": f"answer {i}.{k}: " + text(rng, 40)} for k in range(3)]}

    chunk = 250_000
    cache = folder.parent / (folder.name + ".cache")
    ds = datasets.Dataset.from_generator(rows_of, features=features, cache_dir=str(cache),
                                         gen_kwargs={"shards": list(range((rows + chunk - 1) // chunk))})
    ds.save_to_disk(str(folder), num_shards=8)
    subprocess.run(["rm", "-rf", str(cache)], check=True)


def child_podium(path: str, draw: int) -> dict:
    import datasets  # noqa: F401 - imported before the measurement, as podium's draw imports it
    import pyarrow  # noqa: F401

    from podium.data.loaders import open_source
    from podium.data.mixture import build_mixture, draw_indices

    after_imports = reset_peak()
    t0 = time.perf_counter()
    rows, counts = build_mixture([{"path": path, "count": draw, "format": "stack_exchange"}], seed=0, use="sft")
    seconds = time.perf_counter() - t0
    peak = rss_mb()
    assert counts == {path: draw}
    # The drawn rows' size, measured after the peak: their published rows as JSON text, streamed.
    source = open_source(path)
    indices = draw_indices(len(source), draw, random.Random(f"0:0:{path}"), path)
    drawn_bytes = sum(len(json.dumps({k: v for k, v in row.items() if k != "_source"}).encode())
                      for _, row in source.take(indices))
    return {"seconds": seconds, "rss_after_imports_mb": after_imports, "peak_rss_mb": peak,
            "growth_mb": peak - after_imports, "drawn_mb": drawn_bytes / 2**20, "rows_in_source": len(source)}


def child_materialise(path: str, draw: int, old_rows: int) -> dict:
    import datasets

    after_imports = reset_peak()
    t0 = time.perf_counter()
    ds = datasets.load_from_disk(path).select(range(old_rows))
    rows = [dict(r, _source=f"{path}[{i}]") for i, r in enumerate(ds)]  # the old load_rows
    taken = random.Random(0).sample(rows, min(draw, len(rows)))
    seconds = time.perf_counter() - t0
    assert taken
    return {"seconds": seconds, "rss_after_imports_mb": after_imports, "peak_rss_mb": rss_mb(),
            "growth_mb": rss_mb() - after_imports, "rows": old_rows}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--draw", type=int, default=100_000)
    p.add_argument("--old-rows", type=int, default=200_000, help="rows the materialising draw reads (scaled up)")
    p.add_argument("--root", default="/tmp/podium-large-source", help="where the dataset is built (kept for reruns)")
    p.add_argument("--child", choices=["podium", "materialise"], help=argparse.SUPPRESS)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    folder = Path(args.root) / f"stack-exchange-like-{args.rows}"
    if args.child == "podium":
        print(json.dumps(child_podium(str(folder), args.draw)))
        return 0
    if args.child == "materialise":
        print(json.dumps(child_materialise(str(folder), args.draw, args.old_rows)))
        return 0
    t0 = time.perf_counter()
    build(folder, args.rows)
    print(f"dataset: {folder} ({sum(f.stat().st_size for f in folder.iterdir()) / 2**30:.2f} GiB, "
          f"built or found in {time.perf_counter() - t0:.0f} s)")
    common = ["--rows", str(args.rows), "--draw", str(args.draw), "--root", args.root, "--old-rows", str(args.old_rows)]
    podium = run_child([*common, "--child", "podium"])
    old = run_child([*common, "--child", "materialise"])
    scale = args.rows / args.old_rows
    old_scaled = {"seconds": old["seconds"] * scale, "growth_mb": old["growth_mb"] * scale}
    bounds = {"peak_rss_under_1.5GB": podium["peak_rss_mb"] < 1536,
              "growth_under_3x_drawn": podium["growth_mb"] < 3 * podium["drawn_mb"]}
    print(f"podium draw of {args.draw} of {podium['rows_in_source']} rows: {podium['seconds']:.1f} s, peak RSS "
          f"{podium['peak_rss_mb']:.0f} MB ({podium['rss_after_imports_mb']:.0f} MB after imports, growth "
          f"{podium['growth_mb']:.0f} MB = {podium['growth_mb'] / podium['drawn_mb']:.2f}x the drawn rows' "
          f"{podium['drawn_mb']:.0f} MB)")
    print(f"materialising {args.old_rows} rows first (the old draw): {old['seconds']:.1f} s, growth "
          f"{old['growth_mb']:.0f} MB; scaled to {args.rows} rows: {old_scaled['seconds']:.0f} s, "
          f"{old_scaled['growth_mb'] / 1024:.1f} GB")
    print(f"bounds: {bounds}")
    if not args.no_record:
        path = append_result("large_source_draw", {
            "rows": args.rows, "draw": args.draw, "podium": podium, "materialise": old,
            "materialise_scaled_to_rows": old_scaled, "bounds": bounds, "machine": machine(1)})
        print(f"results appended to {path}")
    return 0 if all(bounds.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
