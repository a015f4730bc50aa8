"""A fuzzer that keeps podium's hardening (issue 26, item 7): generated inputs through the planner, --dry-run,
data loading and the CLI entry points.

For every generated recipe, override list, JSONL file, annotation or results file and model folder (valid,
near-valid and hostile: tests/security/fuzz_inputs.py) the outcome must be success or a PodiumError with a
message (a CLI exit code with an `error:` line) — never another exception or a traceback —, nothing outside
the example's output may change, and nothing may run past `BOUND` seconds.

Profiles (`PODIUM_FUZZ_PROFILE`): `ci` (the default: derandomized, so a CI run is reproducible, and a fixed
number of examples per target that fits about 90 s on 2 cores) and `long` (random, 8x the examples; the
README's local command). A failure prints the smallest input hypothesis found; add it to the probe tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from tests.security.bounds import time_bound
from tests.security.fuzz_inputs import (
    CONFIG_FIELDS,
    DATA,
    FIFO,
    HOSTILE_YAML,
    IN,
    MISSING,
    MODEL,
    MODEL_DAMAGE,
    PAIRS,
    VALUES,
    annotation_files,
    jsonl_bytes,
    overrides,
    recipes,
    results_files,
    safetensors_header_only,
)
from tests.security.planting import snapshot

from podium.cli import main
from podium.data.mixture import build_mixture, load_rows
from podium.data.preference import read_pairs, tokenize_pairs
from podium.errors import PodiumError
from podium.files import read_jsonl
from podium.merging.reader import ModelSource
from podium.models.io import load_model, load_tokenizer
from podium.planning import make_plan, plan_problems
from podium.training.sft import tokenize_dataset

BOUND = 60.0  # seconds per example: far above any honest outcome here, far below a hang
COMMON = dict(deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", derandomize=True, **COMMON)
settings.register_profile("long", derandomize=False, **COMMON)
PROFILE = os.environ.get("PODIUM_FUZZ_PROFILE", "ci")
SCALE = 8 if PROFILE == "long" else 1


def fuzz(examples: int):
    """The profile's settings for a target that gets `examples` examples in CI."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, seed=0)
    path = tmp_path_factory.mktemp("fuzz-tiny") / "model"
    save_model(model, tok, path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-key") / "cache.key"


# Entries podium may create beside the output (its lock and temp names, the record of files it wrote there:
# podium.ownership) and its cache: not "outside the output".
OWN = re.compile(r"^(out(/|$)|\.out\.podium-|\.podium-files\.json$|cache(/|$))")


@contextlib.contextmanager
def sandbox(key_file: Path, model_dir: Path | None = None):
    """A fresh folder per example: `in/` holds the inputs (never to change), `out` is the output."""
    with tempfile.TemporaryDirectory(prefix="podium-fuzz-") as d:
        root = Path(d)
        (root / "in").mkdir()
        (root / "in" / "data.jsonl").write_text('{"prompt": "What is 1 + 1?", "completion": "2", "answer": "2"}\n')
        (root / "in" / "pairs.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
        os.mkfifo(root / "in" / "fifo.jsonl")
        if model_dir is not None:
            shutil.copytree(model_dir, root / "in" / "model")
        old = {k: os.environ.get(k) for k in ("PODIUM_CACHE", "PODIUM_CACHE_KEY")}
        os.environ.update(PODIUM_CACHE=str(root / "cache"), PODIUM_CACHE_KEY=str(key_file))
        cwd = os.getcwd()
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(cwd)
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def place(value, root: Path):
    """Replace the path tokens of a generated input by the sandbox's paths."""
    paths = {IN: root / "in", DATA: root / "in" / "data.jsonl", PAIRS: root / "in" / "pairs.jsonl",
             FIFO: root / "in" / "fifo.jsonl", MODEL: root / "in" / "model", MISSING: root / "in" / "missing"}
    if isinstance(value, str):
        for token, path in paths.items():
            value = value.replace(token, str(path))
        return value
    if isinstance(value, list):
        return [place(v, root) for v in value]
    if isinstance(value, dict):
        return {place(k, root) if isinstance(k, str) else k: place(v, root) for k, v in value.items()}
    return value


def outside_output(root: Path) -> dict:
    return {k: v for k, v in snapshot(root).items() if not OWN.match(k)}


def attempt(fn, root: Path, label: str = "") -> str:
    """Run `fn` under the bound; "ok" or "refused" (a PodiumError with a message). Anything else fails the test,
    and so does a change outside the output. `label` names the outcome in hypothesis' statistics
    (`--hypothesis-show-statistics`: how many examples got how far)."""
    before = outside_output(root)
    with time_bound(BOUND):
        try:
            fn()
            outcome = "ok"
        except PodiumError as e:
            assert str(e).strip(), f"a {type(e).__name__} without a message"
            outcome = "refused"
    assert outside_output(root) == before, "a file outside the output changed"
    if label:
        event(f"{label}: {outcome}")
    return outcome


def cli(argv: list[str], root: Path) -> int:
    """`podium ARGV` in process: an exit code, and for a failure one `error:` line, never a traceback."""
    err = io.StringIO()
    code = None

    def run():
        nonlocal code
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code
    attempt(run, root)
    event(f"podium {argv[0]}: exit {code}")
    text = err.getvalue()
    assert code in (0, 1, 2), (code, text[-2000:])
    assert "Traceback" not in text, text[-4000:]
    if code:
        assert text.strip(), f"exit {code} without a message"
    return code


def write_recipe(root: Path, recipe) -> Path:
    p = root / "in" / "recipe.yaml"
    if isinstance(recipe, str):
        p.write_text(recipe)
    else:
        try:
            p.write_text(yaml.safe_dump(place(recipe, root), allow_unicode=True))
        except (UnicodeEncodeError, yaml.YAMLError):
            p.write_text(json.dumps(place(recipe, root), default=str))
    return p


@fuzz(examples=400)
@given(recipe=st.one_of(recipes(), HOSTILE_YAML))
def test_recipes_through_the_planner_and_dry_run(recipe, key_file, tiny_model_dir):
    with sandbox(key_file, tiny_model_dir) as root:
        path = write_recipe(root, recipe)

        def plan():
            problems = plan_problems(make_plan(str(path), output=str(root / "out")))
            assert all(isinstance(p, str) and p for p in problems)
        attempt(plan, root, "plan")
        cli(["run", str(path), "--dry-run", "--output", str(root / "out")], root)
        assert not (root / "out").exists() or not any((root / "out").iterdir()), "--dry-run wrote into its output"


VALID_RECIPE = {"name": "fuzz", "stages": [
    {"name": "base", "kind": "tiny_model", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
    {"name": "sft", "kind": "sft", "model": "@base", "data": [{"task": "arithmetic", "count": 8}], "max_steps": 1}]}


@fuzz(examples=300)
@given(ovs=overrides())
def test_overrides_through_the_planner(ovs, key_file):
    with sandbox(key_file) as root:
        path = write_recipe(root, VALID_RECIPE)
        attempt(lambda: plan_problems(make_plan(str(path), ovs, output=str(root / "out"))), root, "plan")
        cli(["run", str(path), "--dry-run", "--output", str(root / "out"), *ovs], root)


@fuzz(examples=400)
@given(content=jsonl_bytes(), count=st.one_of(st.none(), st.integers(1, 20)))
def test_data_files_through_loading_and_tokenizing(content, count, key_file, tokenizer):
    with sandbox(key_file) as root:
        path = root / "in" / "rows.jsonl"
        path.write_bytes(content)
        attempt(lambda: read_jsonl(path), root, "read")
        attempt(lambda: load_rows(str(path)), root)
        attempt(lambda: tokenize_dataset(build_mixture([{"path": str(path), "count": count}])[0], tokenizer, 48), root,
                "sft tokenize")
        attempt(lambda: tokenize_pairs(read_pairs(str(path)), tokenizer, 48), root, "pairs tokenize")


@fuzz(examples=240)
@given(content=annotation_files())
def test_annotation_files_through_winrate(content, key_file):
    with sandbox(key_file) as root:
        path = root / "in" / "annotations.json"
        path.write_bytes(content)
        cli(["winrate", str(path), "--output", str(root / "out")], root)


@fuzz(examples=240)
@given(content=results_files(), version=st.sampled_from(["v1", "v2"]))
def test_results_files_through_leaderboard(content, version, key_file):
    with sandbox(key_file) as root:
        path = root / "in" / "results.json"
        path.write_bytes(content)
        cli(["leaderboard", str(path), "--version", version, "--output", str(root / "out")], root)


def damage_model(folder: Path, damage: str, field: str, value) -> None:
    """Change one thing of a model folder the way a broken download, a hand edit or an adversary would."""
    config, weights = folder / "config.json", folder / "model.safetensors"
    if damage == "config-field":
        cfg = json.loads(config.read_text())
        cfg[field] = value
        config.write_text(json.dumps(cfg, allow_nan=True, default=str))
    elif damage == "config-drop":
        cfg = json.loads(config.read_text())
        cfg.pop(field, None)
        config.write_text(json.dumps(cfg))
    elif damage == "config-garbage":
        config.write_text(json.dumps(value, allow_nan=True, default=str))
    elif damage == "weights-truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 3])
    elif damage == "weights-garbage":
        weights.write_bytes(os.urandom(256))
    elif damage == "weights-header-huge":
        weights.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    elif damage == "weights-header-lies":
        weights.write_bytes(safetensors_header_only({"model.norm.weight": {"dtype": "F32", "shape": [10**9],
                                                                           "data_offsets": [0, 4 * 10**9]}}, 64))
    elif damage == "weights-nan":
        w = load_file(str(weights))
        w["model.norm.weight"][0] = float("nan")
        save_file(w, str(weights), metadata={"format": "pt"})
    elif damage == "weights-drop-tensor":
        w = load_file(str(weights))
        w.pop(sorted(w)[len(w) // 2])
        save_file(w, str(weights), metadata={"format": "pt"})
    elif damage in ("weights-fifo", "config-fifo"):
        target = weights if damage == "weights-fifo" else config
        target.unlink()
        os.mkfifo(target)
    elif damage == "weights-dir":
        weights.unlink()
        weights.mkdir()
    elif damage == "no-weights":
        weights.unlink()
    elif damage == "pickle-only":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    elif damage == "tokenizer-garbage":
        (folder / "tokenizer.json").write_text(json.dumps(value, allow_nan=True, default=str))
    elif damage == "symlink-zero":
        weights.unlink()
        weights.symlink_to("/dev/zero")


@fuzz(examples=200)
@given(damage=MODEL_DAMAGE, field=st.sampled_from(CONFIG_FIELDS), value=VALUES)
def test_model_folders_through_loading_and_merging(damage, field, value, key_file, tiny_model_dir):
    with sandbox(key_file, tiny_model_dir) as root:
        model = root / "in" / "model"
        damage_model(model, damage, field, value)
        attempt(lambda: load_model(model), root, "load_model")
        attempt(lambda: load_tokenizer(model), root, "load_tokenizer")

        def read_headers():
            ModelSource(str(model)).close()
        attempt(read_headers, root)
        cfg = root / "in" / "merge.yml"
        cfg.write_text(f"merge_method: passthrough\nmodels:\n  - model: {model}\ndtype: float32\n")
        cli(["merge", str(cfg), str(root / "out")], root)


# Each method's parameters (mergekit's names), for near-valid configs.
METHOD_PARAMS = {"linear": ["weight", "normalize"], "slerp": ["t"], "ties": ["weight", "density", "normalize"],
                 "passthrough": ["scale"], "task_arithmetic": ["weight", "lambda"], "nope": ["weight"]}


@fuzz(examples=120)
@given(data=st.data(), method=st.sampled_from(sorted(METHOD_PARAMS)))
def test_merge_configs_through_the_merge_command(data, method, key_file, tiny_model_dir):
    value = st.one_of(st.floats(-2, 2), st.sampled_from([0, 0.5, 1, True]), VALUES)
    params = data.draw(st.dictionaries(st.sampled_from(METHOD_PARAMS[method]), value, max_size=2))
    with sandbox(key_file, tiny_model_dir) as root:
        model = str(root / "in" / "model")
        entries = [{"model": model, "parameters": params}, {"model": model, "parameters": params}]
        raw = {"merge_method": method, "models": entries[:1] if method == "passthrough" else entries}
        if method in ("slerp", "ties", "task_arithmetic"):
            raw["base_model"] = model
        if data.draw(st.integers(0, 4)) == 0:
            raw[data.draw(st.sampled_from(["parameters", "dtype", "slices", "tokenizer_source"]))] = data.draw(VALUES)
        cfg = root / "in" / "merge.yml"
        cfg.write_text(json.dumps(place(raw, root), allow_nan=True, default=str))
        cli(["merge", str(cfg), str(root / "out")], root)
