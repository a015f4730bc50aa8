"""The streaming executor end to end on tiny models: outputs, sharding, errors, LoRA, CLI and stage."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import podium.cli.merge as cli
from podium.errors import PodiumError
from podium.merging.config import parse_config
from podium.merging.executor import merge_lora, run_merge
from podium.models.io import load_model, save_model
from podium.models.tiny import build_tiny_model
from podium.stages import run_stage

SMALL = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 3, "num_heads": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge-models")
    out = {}
    for seed in range(2):
        model, tok = build_tiny_model(**SMALL, seed=seed)
        out[f"m{seed}"] = str(save_model(model, tok, root / f"m{seed}"))
    return out


def slerp_cfg(m0, m1, t=0.5, **extra):
    return parse_config({"merge_method": "slerp", "base_model": m0, "parameters": {"t": t},
                         "models": [{"model": m0}, {"model": m1}], **extra})


def test_output_loads_and_carries_card_tokenizer_and_config(models, tmp_path):
    out = tmp_path / "merged"
    metrics = run_merge(slerp_cfg(models["m0"], models["m1"], out_dtype="bfloat16"), out)
    assert metrics["num_layers"] == 3
    model = load_model(out, dtype=None)
    assert model.dtype == torch.bfloat16
    card = (out / "README.md").read_text()
    assert "```yaml" in card and "merge_method: slerp" in card
    assert (out / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".*tmp-merge*"))


def test_small_shards_write_an_index(models, tmp_path):
    out = tmp_path / "merged"
    run_merge(slerp_cfg(models["m0"], models["m1"]), out, max_shard_size=20_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    one = run_merge(slerp_cfg(models["m0"], models["m1"]), tmp_path / "one")
    assert one["num_tensors"] == len(index["weight_map"])
    a = load_model(out).state_dict()
    b = load_model(tmp_path / "one").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_depth_upscaling_updates_num_hidden_layers(models, tmp_path):
    cfg = parse_config({"merge_method": "passthrough", "slices": [
        {"sources": [{"model": models["m0"], "layer_range": [0, 2]}]},
        {"sources": [{"model": models["m0"], "layer_range": [1, 3]}]}]})
    run_merge(cfg, tmp_path / "dus")
    model = load_model(tmp_path / "dus")
    assert model.config.num_hidden_layers == 4
    src = load_model(models["m0"]).state_dict()
    assert torch.equal(model.state_dict()["model.layers.2.self_attn.v_proj.weight"],
                       src["model.layers.1.self_attn.v_proj.weight"])


def test_dare_is_reproducible_with_a_seed(models, tmp_path):
    raw = {"merge_method": "dare_ties", "base_model": models["m0"],
           "models": [{"model": models["m1"], "parameters": {"weight": 1.0, "density": 0.5}}]}
    run_merge(parse_config(raw), tmp_path / "a", seed=3)
    run_merge(parse_config(raw), tmp_path / "b", seed=3)
    run_merge(parse_config(raw), tmp_path / "c", seed=4)
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], c["model.layers.0.mlp.up_proj.weight"])


def _broken_copy(src, dst, *, drop=None, arch=None, other_shape=False):
    import shutil

    shutil.copytree(src, dst)
    if drop:
        tensors = load_file(str(dst / "model.safetensors"))
        del tensors[drop]
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if arch:
        cfg = json.loads((dst / "config.json").read_text())
        cfg["architectures"] = [arch]
        (dst / "config.json").write_text(json.dumps(cfg))
    return str(dst)


@pytest.mark.parametrize("case, message", [
    ("missing", r"model .*bad: missing tensor model.layers.1.mlp.down_proj.weight"),
    ("arch", r"different architectures .*MistralForCausalLM"),
    ("shape", r"tensor model.embed_tokens.weight: shape \[\d+, 24\] in model .*wide does not match"),
    ("range", r"layer_range \[0, 5\] is out of bounds for model .*m1, which has 3 layers"),
    ("t", r"outside \[0, 1\]"),
])
def test_bad_input_raises_and_leaves_no_output(models, tmp_path, case, message):
    from pathlib import Path

    m0, m1 = models["m0"], models["m1"]
    if case == "missing":
        bad = _broken_copy(Path(m1), tmp_path / "bad", drop="model.layers.1.mlp.down_proj.weight")
        make = lambda: slerp_cfg(m0, bad)
    elif case == "arch":
        bad = _broken_copy(Path(m1), tmp_path / "bad", arch="MistralForCausalLM")
        make = lambda: slerp_cfg(m0, bad)
    elif case == "shape":
        wide, tok = build_tiny_model(**{**SMALL, "hidden_size": 24}, seed=5)
        bad = str(save_model(wide, tok, tmp_path / "wide"))
        make = lambda: slerp_cfg(m0, bad)
    elif case == "range":
        make = lambda: parse_config({"merge_method": "passthrough", "slices": [
            {"sources": [{"model": m1, "layer_range": [0, 5]}]}]})
    else:
        make = lambda: slerp_cfg(m0, m1, t=[{"filter": "mlp", "value": 1.2}, {"value": 0.5}])
    out = tmp_path / "out"
    with pytest.raises(PodiumError, match=message):
        run_merge(make(), out)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-merge*"))


def test_unavailable_hub_model_is_a_clear_error(models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PodiumError, match="model 'no-such-org/no-such-model': not a local folder"):
        run_merge(slerp_cfg(models["m0"], "no-such-org/no-such-model"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_lora_merge_equals_peft_merge_and_unload(models, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(models["m0"])
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():  # B starts at zero; give the adapter a real delta
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = peft_model.merge_and_unload().state_dict()
    merge_lora(models["m0"], tmp_path / "adapter", tmp_path / "merged")
    got = load_model(tmp_path / "merged").state_dict()
    assert set(got) == set(expected)
    for k in got:
        assert torch.allclose(got[k], expected[k], atol=1e-6), k
    assert not torch.equal(got["model.layers.0.self_attn.q_proj.weight"],
                           load_model(models["m0"]).state_dict()["model.layers.0.self_attn.q_proj.weight"])


def test_cli_and_stage(models, tmp_path, capsys):
    cfg_file = tmp_path / "slerp.yml"
    cfg_file.write_text(f"merge_method: slerp\nbase_model: {models['m0']}\nparameters:\n  t: 0.3\n"
                        f"models:\n  - model: {models['m0']}\n  - model: {models['m1']}\n")
    assert cli.main([str(cfg_file), str(tmp_path / "cli-out")]) == 0
    assert cli.main([str(tmp_path / "nope.yml"), str(tmp_path / "x")]) == 1
    assert "merge config not found" in capsys.readouterr().err
    metrics = run_stage("merge", {"config_file": str(cfg_file)}, tmp_path / "stage-out")
    assert metrics["num_layers"] == 3
    a = load_file(str(tmp_path / "cli-out" / "model.safetensors"))
    b = load_file(str(tmp_path / "stage-out" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
