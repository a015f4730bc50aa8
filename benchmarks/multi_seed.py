"""Run a recipe on several seeds and compare them: every metric as a mean with a 95 % confidence interval.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/multi_seed.py recipes/quickstart.yaml \
        --seeds 0,1,2 --output runs/quickstart-seeds [--jobs 2] [key=value ...]

Each seed runs into OUTPUT/seed-N/ (one `podium run` per seed, `--jobs` at a time, one thread each);
then OUTPUT/compare.json, compare.md and compare_*.png are written (podium.cards.compare) over every
finished seed-N in OUTPUT. A seed already finished is cached by the pipeline, so adding seeds reruns nothing.

Each seed is `podium run RECIPE --output OUTPUT/seed-N seed=N`: the run seed reaches the stages exactly
as under `podium run --seeds` (podium.seeding: added to every stage seed that makes the model; evaluation
items and the `tasks` stage's files stay fixed). What this script adds over `podium run --seeds` is
`--jobs`: seeds run in parallel processes, one thread each, and each run's CPU time is reported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_seed(recipe: str, seed: int, output: Path, overrides: list[str]) -> tuple[int, int, float, str, float]:
    """One `podium run` of `recipe` at `seed` into OUTPUT/seed-N (log in OUTPUT/seed-N.log).

    Returns (seed, exit code, wall seconds, tail of the log, CPU seconds of the run): on one thread,
    the CPU time is what the run takes on an otherwise idle core, whatever the machine's load.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = output / f"seed-{seed}"
    log = output / f"seed-{seed}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "podium", "run", recipe, "--output", str(out), "--no-progress",
                                 *overrides, f"seed={seed}"], env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return (seed, proc.returncode, time.perf_counter() - t0, log.read_text()[-3000:],
            usage.ru_utime + usage.ru_stime)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated, e.g. 0,1,2 or 3-5")
    p.add_argument("--output", required=True)
    p.add_argument("--jobs", type=int, default=1, help="seeds run at once (one CPU thread each)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every seed")
    args = p.parse_args(argv)
    from podium.multiseed import parse_seeds

    seeds = parse_seeds(args.seeds)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    failed = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for seed, rc, seconds, err, cpu in pool.map(lambda s: run_seed(args.recipe, s, output, args.overrides), seeds):
            print(f"seed {seed}: {'ok' if rc == 0 else 'FAILED'} in {seconds / 60:.1f} min "
                  f"({cpu / 60:.1f} CPU min)", flush=True)
            if rc:
                failed.append(seed)
                print(err, file=sys.stderr)
    if len(failed) == len(seeds):
        return 1
    from podium.cards.compare import compare_runs, write_compare

    # Every finished seed in OUTPUT, including those of earlier invocations.
    paths = write_compare(compare_runs([output]), output)
    print((output / "compare.md").read_text())
    print("written:", ", ".join(str(v) for v in paths.values()))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
