"""Model folders from elsewhere: pickles next to safetensors and custom code are never run (issue 13).

Loading reads `*.safetensors` only (a pickle-only folder is refused unless `allow_pickle`), and
`trust_remote_code` is off, so `modeling_*.py` / `tokenization_*.py` shipped in a folder are not imported.
"""

from __future__ import annotations

import json
import shutil

import pytest
from tests.security.planting import PICKLE_NAMES, plant_pickles

from podium.errors import PodiumError
from podium.models.io import load_model, load_tokenizer
from podium.stages import run_stage


def copy_model(tiny_dir, tmp_path, name="model"):
    folder = tmp_path / name
    shutil.copytree(tiny_dir, folder)
    return folder


def test_pickles_next_to_safetensors_are_not_loaded(tiny_dir, tmp_path):
    folder, marker = copy_model(tiny_dir, tmp_path), tmp_path / "PWNED"
    plant_pickles(folder, marker, PICKLE_NAMES + ("model.pt", "model.ckpt", "tokenizer.pkl"))
    load_model(folder)
    load_tokenizer(folder)
    (tmp_path / "d.jsonl").write_text('{"prompt": "1+1=", "completion": "2"}\n' * 4)
    run_stage("sft", {"model": str(folder), "data": str(tmp_path / "d.jsonl"), "batch_size": 2, "max_steps": 2,
                      "save_steps": 1}, tmp_path / "sft")
    assert not marker.exists()


def test_pickle_only_folder_is_refused(tiny_dir, tmp_path):
    folder, marker = copy_model(tiny_dir, tmp_path), tmp_path / "PWNED"
    (folder / "model.safetensors").unlink()
    plant_pickles(folder, marker, ("pytorch_model.bin",))
    with pytest.raises(PodiumError, match="pickle files .*pytorch_model.bin"):
        load_model(folder)
    assert not marker.exists()


CODE = "open({marker!r}, 'w').write('custom code ran')\n"


def test_custom_model_code_is_not_imported(tiny_dir, tmp_path):
    folder, marker = copy_model(tiny_dir, tmp_path), tmp_path / "PWNED"
    (folder / "modeling_evil.py").write_text(CODE.format(marker=str(marker)) + "class EvilModel: pass\n")
    (folder / "configuration_evil.py").write_text(CODE.format(marker=str(marker)) + "class EvilConfig: pass\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        load_model(folder)
    except PodiumError:
        pass  # refusing is fine; running the code is not
    assert not marker.exists()


def test_custom_tokenizer_code_is_not_imported(tiny_dir, tmp_path):
    folder, marker = copy_model(tiny_dir, tmp_path), tmp_path / "PWNED"
    (folder / "tokenization_evil.py").write_text(CODE.format(marker=str(marker)) + "class EvilTokenizer: pass\n")
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tc["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    try:
        load_tokenizer(folder)
    except PodiumError:
        pass
    assert not marker.exists()
