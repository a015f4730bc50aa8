"""podium owns only what it wrote (issue 26, item 1).

The probes: `podium merge CFG DIR` and `podium sft` with `output_dir: DIR` into an existing folder of the
user's deleted `vocab.txt`, `merges.txt`, `tokenizer_utils.py` and `*.safetensors*` files and overwrote
`config.json` and `README.md`; a merge into one of its own models and an SFT into its own base destroyed
that input; `podium card RUN --output FILE` and `podium eval --output FILE` replaced any file, a model's
config.json included. Now a foreign folder is refused (naming its files and --overwrite), --overwrite
deletes nothing podium did not write, an output that is, holds or lies inside an input is refused before
any work, and single files podium did not write are never replaced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.security.planting import snapshot

from podium.cli import main
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.rundir import read_done

# A user's folder that looks like a model folder: every name the old code deleted or overwrote.
USER_FILES = {"vocab.txt": "my vocabulary", "merges.txt": "my merges", "tokenizer_utils.py": "def mine(): ...",
              "model-00001-of-00003.safetensors": "my own shard", "config.json": '{"mine": true}',
              "README.md": "# my notes"}


@pytest.fixture
def models(tiny_dir, tmp_path):
    """Two copies of the tiny model (a merge's inputs) and a linear merge config of them."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_dir, a)
    shutil.copytree(tiny_dir, b)
    cfg = tmp_path / "merge.yml"
    cfg.write_text(f"merge_method: linear\nmodels:\n  - {{model: {a}, parameters: {{weight: 1}}}}\n"
                   f"  - {{model: {b}, parameters: {{weight: 1}}}}\ndtype: float32\n")
    return a, b, cfg


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in USER_FILES.items():
        (folder / name).write_text(text)
    return folder


def test_merge_into_a_users_folder_is_refused_and_it_survives(models, user_folder, capsys):
    before = snapshot(user_folder)
    assert main(["merge", str(models[2]), str(user_folder)]) != 0  # old code: 0, and the files above gone
    err = capsys.readouterr().err
    assert "podium did not make" in err and "README.md" in err and "--overwrite" in err
    assert snapshot(user_folder) == before


def test_merge_with_overwrite_replaces_what_it_writes_and_deletes_nothing(models, user_folder):
    assert main(["merge", str(models[2]), str(user_folder), "--overwrite"]) == 0
    for name in ("vocab.txt", "merges.txt", "tokenizer_utils.py", "model-00001-of-00003.safetensors"):
        assert (user_folder / name).read_text() == USER_FILES[name], name
    assert json.loads((user_folder / "config.json").read_text())["model_type"] == "llama"  # podium's now
    assert (user_folder / "model.safetensors").is_file() and read_done(user_folder) is not None


def test_sft_into_a_users_folder_is_refused_before_training(tiny_dir, user_folder, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model: {tiny_dir}\ndata: {data}\nmax_steps: 1\nbatch_size: 2\noutput_dir: {user_folder}\n")
    before = snapshot(user_folder)
    assert main(["sft", str(cfg)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(user_folder) == before


def test_a_folder_podium_made_is_written_again(models, tmp_path):
    out = tmp_path / "merged"
    assert main(["merge", str(models[2]), str(out)]) == 0
    first = read_done(out)
    (out / "notes.txt").write_text("added by the user")
    assert main(["merge", str(models[2]), str(out)]) == 0  # podium's own folder: no flag needed
    assert read_done(out)["key"] == first["key"] and (out / "notes.txt").read_text() == "added by the user"


@pytest.mark.parametrize("where", ["is", "contains", "inside"])
def test_a_merge_whose_output_is_holds_or_lies_in_an_input_is_refused(models, capsys, where):
    a, b, cfg = models
    out = {"is": a, "contains": a.parent, "inside": a / "merged"}[where]
    before = snapshot(a)
    assert main(["merge", str(cfg), str(out), "--overwrite"]) != 0  # not even on purpose
    err = capsys.readouterr().err
    assert "the input" in err and str(a) in err
    assert snapshot(a) == before


def test_sft_into_its_own_base_is_refused_even_in_a_podium_folder(models, tmp_path, capsys):
    a, b, cfg = models
    merged = tmp_path / "merged"
    assert main(["merge", str(cfg), str(merged)]) == 0  # a folder podium made ...
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    sft = tmp_path / "sft.yaml"
    sft.write_text(f"model: {merged}\ndata: {data}\nmax_steps: 1\nbatch_size: 2\noutput_dir: {merged}\n")
    before = snapshot(merged)
    assert main(["sft", str(sft)]) == 2  # ... but also the SFT's input
    assert f"stage folder {merged} is the input {merged}" in capsys.readouterr().err
    assert snapshot(merged) == before


def test_sft_into_a_finished_stage_of_a_run_dir_that_is_its_base(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: base, kind: tiny_model}\n")
    run = tmp_path / "run"
    run_plan(make_plan(str(recipe), output=str(run)))
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    sft = tmp_path / "sft.yaml"
    sft.write_text(f"model: {run / 'base'}\ndata: {data}\nmax_steps: 1\nbatch_size: 2\n")
    before = snapshot(run / "base")
    assert main(["sft", str(sft), "--output", str(run / "base")]) == 2
    assert "is the input" in capsys.readouterr().err
    assert snapshot(run / "base") == before
    assert make_plan(str(recipe), output=str(run)).stages[0].status == "cached"


def test_a_run_reruns_a_stage_a_command_rewrote(models, tmp_path):
    """A finished stage rewritten by a command run alone is not the stage's output any more: the run reruns it."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: base, kind: tiny_model}\n")
    run = tmp_path / "run"
    run_plan(make_plan(str(recipe), output=str(run)))
    assert main(["merge", str(models[2]), str(run / "base")]) == 0  # podium's folder, not an input: allowed
    assert make_plan(str(recipe), output=str(run)).stages[0].status == "run"


@pytest.fixture
def run_dir(tmp_path):
    from tests.unit.cards_run_fixture import make_run

    return make_run(tmp_path / "cards")


def test_card_output_never_replaces_a_file_podium_did_not_write(run_dir, capsys):
    config = run_dir / "sft" / "config.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text('{"model_type": "llama"}')
    before = config.read_text()
    assert main(["card", str(run_dir), "--output", str(config), "--no-report"]) == 2  # old code: replaced it
    assert "podium did not write it" in capsys.readouterr().err and config.read_text() == before


def test_card_rewrites_its_own_card_but_not_one_edited_since(run_dir, capsys):
    card = run_dir / "README.md"
    assert main(["card", str(run_dir), "--no-report"]) == 0
    assert main(["card", str(run_dir), "--no-report"]) == 0  # podium wrote it and nobody changed it
    card.write_text(card.read_text() + "\nmy own paragraph\n")
    assert main(["card", str(run_dir), "--no-report"]) == 2
    assert "my own paragraph" in card.read_text()
    assert main(["card", str(run_dir), "--no-report", "--overwrite"]) == 0
    assert "my own paragraph" not in card.read_text()


def test_eval_output_inside_the_evaluated_model_is_refused_before_evaluating(models, capsys):
    a = models[0]
    before = snapshot(a)
    assert main(["eval", "--model", str(a), "--tasks", "arithmetic", "--output", str(a / "config.json")]) == 2
    assert "lies inside the input" in capsys.readouterr().err
    assert snapshot(a) == before


def test_leaderboard_output_never_replaces_a_users_file(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"leaderboard_mmlu_pro": {"acc,none": 0.37}}}))
    mine = tmp_path / "board.json"
    mine.write_text("mine")
    assert main(["leaderboard", str(results), "--output", str(mine)]) == 2
    assert mine.read_text() == "mine"
    out = tmp_path / "new.json"
    assert main(["leaderboard", str(results), "--output", str(out)]) == 0
    assert main(["leaderboard", str(results), "--output", str(out)]) == 0  # podium's own file: replaced
    assert json.loads(out.read_text())["tasks"]["mmlu_pro"] == pytest.approx((0.37 - 0.1) / 0.9 * 100)


def test_a_users_vocab_in_a_stage_folder_survives_publication(tmp_path):
    """Publication deletes only the model files podium published there itself (`.podium-published`)."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    out = tmp_path / "model"
    save_model(model, tok, out)
    (out / "vocab.txt").write_text("added by the user after podium wrote the folder")
    save_model(model, tok, out)
    assert (out / "vocab.txt").read_text().startswith("added by the user")
    assert sorted(p.name for p in Path(out).glob("model*.safetensors")) == ["model.safetensors"]
