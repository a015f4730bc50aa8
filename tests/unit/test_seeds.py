"""Multi-seed runs (issue 17 item 1): how the recipe seed reaches the stages (podium.seeding), one run dir
per seed with seed-independent stages run once (podium.multiseed), compare.json / compare.md, and
`podium compare` on existing runs."""

import json
import math
import os
import textwrap

import pytest

from podium.cards.model_card import write_card
from podium.cli import main
from podium.errors import ConfigError, PodiumError
from podium.files import write_json
from podium.multiseed import compare_dirs, make_seed_plans, parse_seeds, run_seeds
from podium.planning import make_plan
from podium.refs import DataRef
from podium.rundir import is_run_dir, read_stage_record
from podium.seeding import apply_run_seed, offset_seeds
from podium.stages import StageConfig, get_stage, stage

CALLS: list[tuple[str, int]] = []
# Per-seed "accuracy" of the two scored stages: a function of the seed the stage received.
SCORES = {"low": lambda s: 0.20 + 0.03 * (s % 3), "high": lambda s: 0.30 + 0.05 * (s % 3) + 0.01 * s}


class ScoredConfig(StageConfig):
    seed: int = 0
    level: str = "low"
    source: DataRef | None = None
    fail_on_seed: int | None = None


@stage("test_scored", ScoredConfig, outputs={"out": "out.json"})
def scored(cfg, ctx):
    CALLS.append((ctx.name, cfg.seed))
    if cfg.fail_on_seed == cfg.seed:
        raise PodiumError(f"seed {cfg.seed} diverged")
    write_json(ctx.out_dir / "out.json", {"seed": cfg.seed})
    return {"accuracy": SCORES[cfg.level](cfg.seed)}


class UnseededConfig(StageConfig):
    source: DataRef | None = None


@stage("test_unseeded", UnseededConfig, outputs={"out": "out.json"})
def unseeded(cfg, ctx):
    CALLS.append((ctx.name, -1))
    write_json(ctx.out_dir / "out.json", {"lines": len(open(cfg.source).read().splitlines()) if cfg.source else 0})
    return {"lines": 1.0}


RECIPE = """\
name: seeds
stages:
  - {name: data, kind: tasks, task: arithmetic, train: 4, test: 3}
  - {name: count, kind: test_unseeded, source: "@data.test"}
  - {name: low, kind: test_scored, level: low, source: "@data.train"}
  - {name: high, kind: test_scored, level: high, seed: 10, source: "@count"}
"""


@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(RECIPE))
    CALLS.clear()
    return p


# --- podium.seeding: the rule -------------------------------------------------------------------------


def test_seed_zero_is_the_recipe_as_written():
    spec = get_stage("sft")
    settings = {"model": "m", "data": [{"task": "arithmetic", "seed": 1}]}
    assert apply_run_seed(spec, settings, 0) is settings


def test_unset_seed_is_the_run_seed_and_a_written_seed_is_offset():
    spec = get_stage("sft")
    assert apply_run_seed(spec, {"model": "m"}, 3)["seed"] == 3
    out = apply_run_seed(spec, {"model": "m", "seed": 1, "data": [{"task": "arithmetic", "seed": 1}, {"path": "x"}]}, 3)
    assert out["seed"] == 4 and out["data"] == [{"task": "arithmetic", "seed": 4}, {"path": "x"}]
    # selfplay's per-iteration train settings move with it too; `True` under "seed" is no integer to offset
    assert offset_seeds({"train": {"seed": 2}, "x": [{"seed": True}]}, 5) == {"train": {"seed": 7}, "x": [{"seed": True}]}


def test_two_stages_seeded_apart_stay_apart_on_every_run_seed():
    """Sakura's toy: two fine-tunes written with seed 0 and seed 1. Replacing the seeds would make them equal."""
    spec = get_stage("sft")
    for run_seed in range(4):
        a = apply_run_seed(spec, {"model": "m"}, run_seed).get("seed", 0)
        b = apply_run_seed(spec, {"model": "m", "seed": 1}, run_seed)["seed"]
        assert b - a == 1


@pytest.mark.parametrize("kind", ["eval", "tasks"])
def test_evaluation_and_task_datasets_are_pinned(kind):
    settings = {"model": "m", "seed": 2} if kind == "eval" else {"seed": 2}
    assert apply_run_seed(get_stage(kind), settings, 5) == settings


def test_kinds_without_a_seed_are_untouched():
    assert apply_run_seed(get_stage("card"), {"model": "m"}, 5) == {"model": "m"}


def test_recipe_seed_reaches_the_plan(recipe, tmp_path):
    plans = [make_plan(str(recipe), [f"seed={s}"], output=str(tmp_path / f"r{s}")) for s in (0, 1)]
    by_name = [{ps.name: ps for ps in p.stages} for p in plans]
    assert [by_name[0]["low"].config.seed, by_name[1]["low"].config.seed] == [0, 1]
    assert [by_name[0]["high"].config.seed, by_name[1]["high"].config.seed] == [10, 11]
    for name, same in (("data", True), ("count", True), ("low", False), ("high", False)):
        assert (by_name[0][name].key == by_name[1][name].key) is same, name


def test_seed_and_seeds_together_are_refused(recipe, tmp_path):
    recipe.write_text(RECIPE.replace("name: seeds\n", "name: seeds\nseed: 1\nseeds: [0, 1]\n"))
    with pytest.raises(ConfigError, match="give the recipe `seed` or `seeds`, not both"):
        make_plan(str(recipe), output=str(tmp_path / "run"))


@pytest.mark.parametrize("text, seeds", [("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]), ("3, 1", [3, 1]),
                                         ("0-1,5", [0, 1, 5])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "-1", "1,1", "3-1"])
def test_parse_seeds_refuses(text):
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


# --- podium.multiseed: one run dir per seed, shared stages, compare ------------------------------------


def interval(values):
    """Mean and 95 % Student-t interval computed here (t quantiles of df 1, 2 from closed forms)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = {2: math.tan(math.pi * 0.475), 3: math.sqrt(0.9025 * 2 / 0.0975)}[n]  # df = n - 1
    return mean, mean - t * sd / math.sqrt(n), mean + t * sd / math.sqrt(n)


def test_seeds_run_into_seed_dirs_sharing_seed_independent_stages(recipe, tmp_path):
    out = tmp_path / "out"
    seed_plans = make_seed_plans(str(recipe), [0, 1, 2], run_dir=out)
    status = {s: [ps.status for ps in p.stages] for s, p in seed_plans.plans.items()}
    assert status == {0: ["run"] * 4, 1: ["reuse", "reuse", "run", "run"], 2: ["reuse", "reuse", "run", "run"]}
    result = run_seeds(seed_plans, show_progress=False)
    assert not result.failed
    # The seed-independent stages ran once; the seeded ones once per seed, with the run seed applied.
    assert CALLS == [("count", -1), ("low", 0), ("high", 10), ("low", 1), ("high", 11), ("low", 2), ("high", 12)]
    for s in (0, 1, 2):
        run = out / f"seed-{s}"
        assert is_run_dir(run) and (run / "report.md").exists()
        report = json.loads((run / "report.json").read_text())
        assert [x["name"] for x in report["stages"]] == ["data", "count", "low", "high"]
        for name in ("data", "count", "low", "high"):
            assert (run / name / ".podium-done").exists()
            record = read_stage_record(run / name)
            assert str(out / "seed-0") not in json.dumps(record.config) or s == 0, "a copy keeps its own paths"
        assert json.loads((run / "low" / "out.json").read_text()) == {"seed": s}
    # A shared stage is a copy of seed 0's folder (hard links on this filesystem), not a link to it.
    a, b = out / "seed-0" / "data" / "test.jsonl", out / "seed-2" / "data" / "test.jsonl"
    assert not b.is_symlink() and os.stat(a).st_ino == os.stat(b).st_ino
    # A card can be written from any seed's run dir.
    assert write_card(out / "seed-1").exists()

    compare = json.loads((out / "compare.json").read_text())
    (group,) = compare["groups"]
    assert group["label"] == "seeds" and group["seeds"] == [0, 1, 2]
    rows = {(m["stage"], m["metric"]): m for m in group["metrics"]}
    for level, stage_seed in (("low", lambda s: s), ("high", lambda s: 10 + s)):
        values = [SCORES[level](stage_seed(s)) for s in (0, 1, 2)]
        mean, low, high = interval(values)
        row = rows[(level, "accuracy")]
        assert row["values"] == pytest.approx(values)
        assert (row["mean"], row["low"], row["high"]) == pytest.approx((mean, low, high), rel=1e-9)
    md = (out / "compare.md").read_text()
    assert "| low | accuracy |" in md and "seeds 0, 1, 2" in md
    assert (out / "compare_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_adding_seeds_later_reruns_nothing_already_done(recipe, tmp_path):
    out = tmp_path / "out"
    run_seeds(make_seed_plans(str(recipe), [0, 1], run_dir=out), show_progress=False)
    CALLS.clear()
    seed_plans = make_seed_plans(str(recipe), [0, 1, 2], run_dir=out)
    assert [ps.status for ps in seed_plans.plans[0].stages] == ["cached"] * 4
    assert [ps.status for ps in seed_plans.plans[2].stages] == ["reuse", "reuse", "run", "run"]
    run_seeds(seed_plans, show_progress=False)
    assert CALLS == [("low", 2), ("high", 12)]
    assert json.loads((out / "compare.json").read_text())["groups"][0]["seeds"] == [0, 1, 2]


def test_a_failing_seed_does_not_stop_the_others(recipe, tmp_path, capsys):
    out = tmp_path / "out"
    recipe.write_text(RECIPE.replace("level: low,", "level: low, fail_on_seed: 1,"))
    assert main(["run", str(recipe), "--seeds", "0-2", "--output", str(out), "--no-progress"]) == 2
    assert "seed(s) 1 failed" in capsys.readouterr().err
    assert ("low", 2) in CALLS
    assert json.loads((out / "compare.json").read_text())["groups"][0]["seeds"] == [0, 2]


def test_cli_seeds_in_the_recipe_and_dry_run(recipe, tmp_path, capsys):
    out = tmp_path / "out"
    recipe.write_text(RECIPE.replace("name: seeds\n", "name: seeds\nseeds: [0, 1]\n"))
    assert main(["run", str(recipe), "--output", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "seed 0" in printed and "seed 1" in printed and "reuse <- seed-0" in printed
    assert CALLS == [] and not out.exists()
    assert main(["run", str(recipe), "--output", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("seed-")) == ["seed-0", "seed-1"]
    assert "Comparison across seeds" in capsys.readouterr().out


def test_a_single_run_dir_is_not_taken_for_a_multi_seed_dir(recipe, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--output", str(out), "--no-progress"]) == 0
    with pytest.raises(PodiumError, match="run dir of a single run"):
        make_seed_plans(str(recipe), [0, 1], run_dir=out)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "compare.md").write_text("my notes")
    with pytest.raises(PodiumError, match="already holds compare.md"):
        make_seed_plans(str(recipe), [0, 1], run_dir=tmp_path / "mine")


def test_podium_compare_of_two_recipes_differing_in_one_setting(recipe, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    run_seeds(make_seed_plans(str(recipe), [0, 1, 2], run_dir=a), show_progress=False)
    run_seeds(make_seed_plans(str(recipe), [0, 1, 2], ["low.level=high"], run_dir=b), show_progress=False)
    assert main(["compare", f"base={a}", f"changed={b}", "--output", str(tmp_path / "cmp")]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    (between,) = result["between"]
    assert (between["group"], between["minus"]) == ("changed", "base")
    d = next(x for x in between["differences"] if (x["stage"], x["metric"]) == ("low", "accuracy"))
    diffs = [SCORES["high"](s) - SCORES["low"](s) for s in (0, 1, 2)]
    mean, low, high = interval(diffs)
    assert d["method"] == "paired" and (d["mean"], d["low"], d["high"]) == pytest.approx((mean, low, high))
    # One folder of seed runs: compare.* go into it by default.
    _, paths = compare_dirs([str(a)], plots=False)
    assert paths["json"] == a / "compare.json"
    with pytest.raises(PodiumError, match="give --output"):
        compare_dirs([str(a), str(b)])


def test_the_example_recipe_shares_its_dataset_across_seeds(tmp_path):
    from pathlib import Path

    recipe = Path(__file__).parents[2] / "recipes" / "examples" / "multi-seed.yaml"
    seed_plans = make_seed_plans(str(recipe), [0, 1, 2], run_dir=tmp_path / "out")
    assert {s: [ps.status for ps in p.stages] for s, p in seed_plans.plans.items()}[2] == [
        "reuse", "run", "run", "run", "run"]
    assert [p.stages[3].config.seed for p in seed_plans.plans.values()] == [0, 1, 2]


def test_run_recipe_points_a_seeds_recipe_to_multiseed(recipe, tmp_path):
    from podium.pipeline import run_recipe

    recipe.write_text(RECIPE.replace("name: seeds\n", "name: seeds\nseeds: [0, 1]\n"))
    with pytest.raises(ConfigError, match="runs once per seed"):
        run_recipe(str(recipe), output=str(tmp_path / "run"))
    assert CALLS == []
