"""Recipes and model folders that used to end in a traceback now end in one clear error (issue 13, item 8)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from podium.config import MAX_YAML_VALUES, load_yaml, parse_yaml
from podium.errors import ConfigError, PodiumError
from podium.models.io import load_model

ROOT = Path(__file__).resolve().parents[2]

# The classic "billion laughs" document: 9 levels of 9 aliases, 583 bytes, 9**9 values when expanded.
BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
name: bomb
stages:
  - {name: base, kind: tiny_model, hidden_size: *i}
"""


def test_yaml_alias_bomb_is_refused_quickly_and_in_little_memory(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"{p}: the document expands to more than {MAX_YAML_VALUES:,} values"):
        load_yaml(p)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 10 and peak < 200e6, (seconds, peak)


def test_aliases_and_merge_keys_still_work():
    data = parse_yaml("defaults: &d {batch_size: 4, seed: 1}\nsft:\n  <<: *d\n  seed: 2\nlist: [*d, *d]\n"
                      "two: {<<: [{a: 1}, {a: 2, b: 3}]}\n").data
    assert data["sft"] == {"batch_size": 4, "seed": 2} and data["list"] == [{"batch_size": 4, "seed": 1}] * 2
    assert data["two"] == {"a": 1, "b": 3}  # YAML merge: earlier mappings win, written-out keys win over all


@pytest.mark.parametrize("text,expected", [
    ("x: &x [*x]\n", "nests too deeply"),
    ("? [1, 2]\n: 3\n", "r.yaml:1: a key must be a plain value"),
    ("a: !!python/object/apply:os.system [echo hi]\n", "r.yaml:1: unsupported YAML tag"),
    ("a: !!python/name:os.system x\n", "r.yaml:1: invalid YAML"),
    ("a: {<<: [1, 2]}\n", "r.yaml:1: `<<` merges mappings only"),
])
def test_hostile_yaml_is_a_config_error(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_yaml(text, "r.yaml")


def test_non_utf8_recipe_names_file_and_line(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(b"name: t\nstages:\n  - {name: caf\xe9, kind: tiny_model}\n")
    with pytest.raises(ConfigError, match=rf"{p}:3: not UTF-8 text \(byte 0xe9 at column 15\)"):
        load_yaml(p)
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(p), "--dry-run"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "Traceback" not in r.stderr and f"{p}:3: not UTF-8" in r.stderr


# --- model folders -------------------------------------------------------------------------------------

def broken_copy(tiny_dir, tmp_path, name, damage):
    folder = tmp_path / name
    shutil.copytree(tiny_dir, folder)
    damage(folder)
    return folder


def test_model_folder_without_config(tiny_dir, tmp_path):
    folder = broken_copy(tiny_dir, tmp_path, "m", lambda f: (f / "config.json").unlink())
    with pytest.raises(PodiumError, match=rf"{folder}: no config.json"):
        load_model(folder)


@pytest.mark.parametrize("keep", [0, 20, 0.5])
def test_truncated_safetensors(tiny_dir, tmp_path, keep):
    def truncate(f):
        w = f / "model.safetensors"
        b = w.read_bytes()
        w.write_bytes(b[: int(len(b) * keep) if isinstance(keep, float) else keep])

    folder = broken_copy(tiny_dir, tmp_path, "m", truncate)
    with pytest.raises(PodiumError, match=rf"{folder / 'model.safetensors'}: damaged or truncated safetensors"):
        load_model(folder)


def test_unknown_model_type(tiny_dir, tmp_path):
    folder = broken_copy(tiny_dir, tmp_path, "m", lambda f: (f / "config.json").write_text("{}"))
    with pytest.raises(PodiumError, match="could not load model"):
        load_model(folder)


def test_sft_on_a_broken_model_folder_is_one_line(tiny_dir, tmp_path):
    folder = broken_copy(tiny_dir, tmp_path, "m", lambda f: (f / "config.json").unlink())
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model: {folder}\ndata: {tmp_path / 'd.jsonl'}\nbatch_size: 2\nmax_steps: 1\n"
                   f"output_dir: {tmp_path / 'out'}\n")
    r = subprocess.run([sys.executable, "-m", "podium", "sft", str(cfg)], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "no config.json" in r.stderr


def test_tokenizer_larger_than_the_embedding_fails_before_training(tmp_path):
    """The probe: vocab size != tokenizer size ended in an IndexError inside the embedding."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model
    from podium.stages import run_stage

    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    model.resize_token_embeddings(len(tok) - 8)
    save_model(model, tok, tmp_path / "m")
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    with pytest.raises(PodiumError, match=rf"tokenizer has {len(tok)} tokens but the model's embedding has only "
                                          rf"{len(tok) - 8} rows"):
        run_stage("sft", {"model": str(tmp_path / "m"), "data": str(tmp_path / "d.jsonl"), "batch_size": 2,
                          "max_steps": 1}, tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.jsonl").exists()
