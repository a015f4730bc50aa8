"""Rank-local loading's pieces (podium.distributed.fsdp_load) against the real things: FSDP2's row split is
`torch.chunk`'s, rows read from a safetensors file (single or with a Hub index) are the tensor's rows, and a model
built empty and filled from its files is the model `from_pretrained` loads (weights, tied embeddings, buffers,
Mixtral's experts fused from per-expert files), LoRA adapters included. The 2-process runs are in
tests/integration/test_fsdp.py."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tests.parity.families import build_family
from transformers import AutoModelForCausalLM

from podium.distributed.fsdp_load import empty_model, is_empty, materialise
from podium.distributed.weight_files import WeightFiles, shard_rows
from podium.distributed.weight_sources import Experts, plan_sources, unwrapped_name
from podium.errors import PodiumError
from podium.models.io import save_model
from podium.training.lora import LoraSettings, apply_lora


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> a folder with the family's tiny model in several safetensors files and an index."""
    out = {}
    for family in ("llama3", "gemma2", "mixtral"):
        model, tok = build_family(family, seed=3)
        out[family] = save_model(model, tok, tmp_path_factory.mktemp(family), max_shard_size="100KB")
    return out


def test_shard_rows_are_fsdp2s_dim0_chunks():
    for n in range(0, 14):
        for world in range(1, 6):
            pieces = torch.arange(n).chunk(world) if n else ()
            for rank in range(world):
                start, stop = shard_rows(n, world, rank)
                expected = pieces[rank].tolist() if rank < len(pieces) else []
                assert list(range(start, stop)) == expected, (n, world, rank)


def test_rows_come_from_the_file_that_holds_them(saved, tmp_path):
    folder = saved["llama3"]
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) > 1  # a sharded layout
    whole = AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()
    files = WeightFiles.of(folder)
    with files:
        for key in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight"):
            n = whole[key].shape[0]
            for start, stop in ((0, n), (3, 17), (n - 1, n), (5, 5)):
                assert torch.equal(files.rows(key, start, stop), whole[key][start:stop]), (key, start, stop)
    assert files.bytes_read > 0
    # One file, no index: the files' own keys.
    single = save_model(*build_family("qwen2", seed=0), tmp_path / "single")
    assert set(WeightFiles.of(single).keys()) == set(AutoModelForCausalLM.from_pretrained(str(single)).state_dict())
    # A damaged index, or one naming a file that is not there, is a PodiumError naming it.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../elsewhere.safetensors"}}')
    with pytest.raises(PodiumError, match="not a file in"):
        WeightFiles.of(broken)
    (broken / "model.safetensors.index.json").write_text("[1, 2]")
    with pytest.raises(PodiumError, match="not a safetensors index"):
        WeightFiles.of(broken)
    # A truncated weight file is named before any of its bytes are used.
    cut = tmp_path / "cut"
    shutil.copytree(folder, cut)
    file = cut / index["model.embed_tokens.weight"]
    file.write_bytes(file.read_bytes()[:-64])
    with pytest.raises(PodiumError, match=f"{file.name}: damaged or unreadable safetensors file"), WeightFiles.of(cut) as f:
        f.rows("model.embed_tokens.weight", 0, 1)


@pytest.mark.parametrize("family", ["llama3", "gemma2", "mixtral"])
def test_an_empty_model_filled_from_its_files_is_the_model_from_pretrained_loads(saved, family):
    folder = saved[family]
    reference = AutoModelForCausalLM.from_pretrained(str(folder))
    model = empty_model(folder, dtype=torch.float32, attn={})
    assert is_empty(model) and all(not b.is_meta for b in model.buffers())  # buffers from the modules' own init
    done = materialise(model, torch.device("cpu"))  # one process: every tensor whole
    assert not is_empty(model) and done["tensors"] == len(dict.fromkeys(model.parameters()))
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]), k
    for (name, b), (_, b_ref) in zip(model.named_buffers(), reference.named_buffers()):  # inv_freq, embed_scale
        assert b.dtype == b_ref.dtype and torch.equal(b, b_ref), name
    tied = model.config.tie_word_embeddings
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied == (family == "llama3")
    assert model.generation_config.to_dict() == reference.generation_config.to_dict()
    ids = torch.arange(24).view(2, 12) + 3
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_experts_rows_are_the_fused_tensor_rows_transformers_builds(saved):
    folder = saved["mixtral"]
    reference = AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()
    model = empty_model(folder, dtype=torch.float32, attn={})
    files = WeightFiles.of(folder)
    plan = plan_sources(model, files)
    fused = [k for k, v in plan.items() if isinstance(v, Experts)]
    assert sorted(fused) == sorted(k for k in reference if k.endswith(("experts.gate_up_proj", "experts.down_proj")))
    assert plan["model.layers.0.mlp.gate.weight"].key == "model.layers.0.block_sparse_moe.gate.weight"  # renamed
    with files:
        for key in fused:
            for world in (1, 2, 3, 5):  # 4 experts: ranks past the last expert hold none
                for rank in range(world):
                    start, stop = shard_rows(reference[key].shape[0], world, rank)
                    assert torch.equal(plan[key].read(files, start, stop), reference[key][start:stop]), (key, world, rank)


def test_lora_on_an_empty_model_keeps_the_adapters_peft_drew(saved):
    folder = saved["llama3"]
    torch.manual_seed(0)
    full = apply_lora(AutoModelForCausalLM.from_pretrained(str(folder)), LoraSettings(r=4))
    torch.manual_seed(0)
    empty = apply_lora(empty_model(folder, dtype=torch.float32, attn={}), LoraSettings(r=4))
    adapters = {n: p for n, p in empty.named_parameters() if "lora_" in n}
    assert adapters and not any(p.is_meta for p in adapters.values())
    materialise(empty, torch.device("cpu"))
    theirs = dict(full.named_parameters())
    for name, p in empty.named_parameters():
        assert torch.equal(p, theirs[name]), name
    assert unwrapped_name("base_model.model.layers.0.mlp.experts.base_layer.base_layer.down_proj") == \
        "base_model.model.layers.0.mlp.experts.down_proj"


def test_weights_that_do_not_fit_the_config_are_a_podium_error(saved, tmp_path):
    model, tok = build_family("qwen2", seed=0)
    folder = save_model(model, tok, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(PodiumError, match=r"mlp.gate_proj.weight has shape \(128, 64\) in the files, .* expects \(96, 64\)"):
        materialise(empty_model(folder, dtype=torch.float32, attn={}), torch.device("cpu"))
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))  # 2 layer types
    with pytest.raises(PodiumError, match="could not load model .*num_hidden_layers"):
        empty_model(folder, dtype=torch.float32, attn={})
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3, "layer_types": None}))
    with pytest.raises(PodiumError, match="no tensor for parameter model.layers.2"):
        materialise(empty_model(folder, dtype=torch.float32, attn={}), torch.device("cpu"))


def test_an_empty_model_that_no_launch_shards_is_a_podium_error(saved, tmp_path):
    """Only sharding fills an empty model: a run that does not shard says so instead of training meta tensors."""
    from podium.training.loop import train_loop
    from podium.training.settings import TrainSettings

    model = empty_model(saved["llama3"], dtype=torch.float32, attn={})
    with pytest.raises(PodiumError, match="built empty for FSDP2's rank-local loading, but this run does not shard it"):
        train_loop(model, lambda m, b: None, [{}, {}], lambda rows: {}, TrainSettings(batch_size=1, max_steps=1),
                   tmp_path / "out", show_progress=False)


def test_a_non_finite_weight_in_the_files_is_a_podium_error_naming_it(tmp_path):
    """Rank-local loading checks what it reads as load_model does: NaN in a file fails, naming the tensor."""
    from safetensors.torch import load_file, save_file

    model, tok = build_family("llama3", seed=0)
    folder = save_model(model, tok, tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    weights[name][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PodiumError, match=f"weight {name} holds NaN or infinite values"):
        materialise(empty_model(folder, dtype=torch.float32, attn={}), torch.device("cpu"))
