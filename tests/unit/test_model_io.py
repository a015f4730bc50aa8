import pytest
import torch

from podium.errors import PodiumError
from podium.models.io import load_model, load_tokenizer
from podium.models.policy import security_policy


def test_roundtrip(tiny_dir):
    m = load_model(tiny_dir)
    tok = load_tokenizer(tiny_dir)
    assert tok.eos_token == "<|end|>" and tok.chat_template
    assert m.config.model_type == "llama"


def test_pickle_weights_refused_unless_allowed(tiny_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_dir, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(PodiumError, match="pickle files .*pytorch_model.bin.*allow_pickle"):
        load_model(folder)
    with security_policy(allow_pickle=True):
        assert load_model(folder).config.model_type == "llama"


def test_missing_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(PodiumError, match="no model weights"):
        load_model(tmp_path)


def test_unreachable_hub_id_is_clear():
    with pytest.raises(PodiumError, match="could not load model 'nobody/nothing-here'"):
        load_model("nobody/nothing-here")


def test_save_over_sharded_model_leaves_no_stale_shards(tmp_path):
    """Saving unsharded over a sharded save removes the old shards and index; other files stay."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    out = tmp_path / "stage"
    save_model(model, tok, out, max_shard_size="20KB")
    assert (out / "model.safetensors.index.json").exists()
    (out / "metrics.jsonl").write_text("{}\n")
    save_model(model, tok, out)
    assert sorted(p.name for p in out.glob("model*.safetensors*")) == ["model.safetensors"]
    assert (out / "metrics.jsonl").read_text() == "{}\n"
    assert not list(tmp_path.glob(".stage.podium-*"))  # no temp folder left beside it
    assert load_model(out).config.model_type == "llama"
