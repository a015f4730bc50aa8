"""podium merges equal mergekit 0.1.5 merges on tiny Llamas (max abs diff <= 1e-6, float32)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from podium.merging.config import parse_config
from podium.merging.executor import run_merge
from podium.models.io import save_model
from podium.models.tiny import build_tiny_model

mergekit = pytest.importorskip("mergekit")
pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Three tiny Llamas (4 layers) with different random weights: m0 (the base), m1, m2."""
    root = tmp_path_factory.mktemp("models")
    paths = []
    for seed in range(3):
        model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=4, num_heads=2, seed=seed)
        paths.append(str(save_model(model, tok, root / f"m{seed}")))
    return paths


def mergekit_merge(config: dict, out) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge as mk_run_merge
    from mergekit.options import MergeOptions

    mk_run_merge(MergeConfiguration.model_validate(config), str(out),
                 MergeOptions(quiet=True, copy_tokenizer=True, write_model_card=False, allow_crimes=False,
                              lora_merge_cache=str(out.parent / "mergekit-lora-cache")))
    return _load(out)


def _load(folder) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def _load_model(path) -> dict[str, torch.Tensor]:
    from pathlib import Path

    return _load(Path(path))


def assert_parity(config: dict, tmp_path) -> dict[str, torch.Tensor]:
    ours_dir = tmp_path / "podium"
    run_merge(parse_config(yaml.safe_load(yaml.safe_dump(config))), ours_dir)
    ours = _load(ours_dir)
    theirs = mergekit_merge(config, tmp_path / "mergekit")
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype, name
        assert ours[name].shape == theirs[name].shape, name
        diff = (ours[name].double() - theirs[name].double()).abs().max().item()
        assert diff <= 1e-6, f"{name}: max abs diff {diff}"
    ours_cfg = json.loads((ours_dir / "config.json").read_text())
    theirs_cfg = json.loads((tmp_path / "mergekit" / "config.json").read_text())
    assert ours_cfg["num_hidden_layers"] == theirs_cfg["num_hidden_layers"]
    return ours


def test_linear(tiny_models, tmp_path):
    m0, m1, m2 = tiny_models
    assert_parity({"merge_method": "linear", "dtype": "float32", "models": [
        {"model": m0, "parameters": {"weight": 0.5}},
        {"model": m1, "parameters": {"weight": [0.2, 1.0]}},
        {"model": m2, "parameters": {"weight": [{"filter": "mlp", "value": 2.0}, {"value": 0.3}]}}]}, tmp_path)


def test_slerp_sakura_solar_gradient(tiny_models, tmp_path):
    """The Sakura-SOLAR-Instruct config (gradient t per self_attn / mlp, 0.5 elsewhere) on tiny models."""
    m0, m1, _ = tiny_models
    ours = assert_parity({
        "slices": [{"sources": [{"model": m1, "layer_range": [0, 4]}, {"model": m0, "layer_range": [0, 4]}]}],
        "merge_method": "slerp", "base_model": m0,
        "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                             {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
                             {"value": 0.5}]},
        "tokenizer_source": "union", "dtype": "float32"}, tmp_path)
    # gradient endpoints: layer 0 self_attn has t=0 (the base), layer 3 t=1 (the other model); mlp reversed
    base, other = _load_model(m0), _load_model(m1)
    close = {"atol": 1e-6, "rtol": 0}
    assert torch.allclose(ours["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"], **close)
    assert torch.allclose(ours["model.layers.3.self_attn.q_proj.weight"], other["model.layers.3.self_attn.q_proj.weight"], **close)
    assert torch.allclose(ours["model.layers.0.mlp.up_proj.weight"], other["model.layers.0.mlp.up_proj.weight"], **close)
    assert not torch.allclose(ours["model.layers.1.mlp.up_proj.weight"], base["model.layers.1.mlp.up_proj.weight"], **close)


def test_slerp_scalar_with_models_syntax(tiny_models, tmp_path):
    m0, m1, _ = tiny_models
    assert_parity({"merge_method": "slerp", "base_model": m0, "parameters": {"t": 0.3}, "dtype": "float32",
                   "models": [{"model": m0}, {"model": m1}]}, tmp_path)


def test_task_arithmetic(tiny_models, tmp_path):
    m0, m1, m2 = tiny_models
    assert_parity({"merge_method": "task_arithmetic", "base_model": m0, "dtype": "float32",
                   "parameters": {"lambda": 0.8},
                   "models": [{"model": m1, "parameters": {"weight": 0.7}},
                              {"model": m2, "parameters": {"weight": [0.1, 0.6]}}]}, tmp_path)


@pytest.mark.parametrize("normalize", [True, False])
def test_ties(tiny_models, tmp_path, normalize):
    m0, m1, m2 = tiny_models
    assert_parity({"merge_method": "ties", "base_model": m0, "dtype": "float32",
                   "parameters": {"normalize": normalize},
                   "models": [{"model": m1, "parameters": {"weight": 0.6, "density": 0.5}},
                              {"model": m2, "parameters": {"weight": 0.4, "density": [0.3, 0.9]}}]}, tmp_path)


def test_passthrough_depth_upscaling(tiny_models, tmp_path):
    """SOLAR depth up-scaling in miniature: layers [0, 3) + [1, 4) of one 4-layer model -> 6 layers."""
    m0, _, _ = tiny_models
    ours = assert_parity({"merge_method": "passthrough", "dtype": "float32", "slices": [
        {"sources": [{"model": m0, "layer_range": [0, 3]}]},
        {"sources": [{"model": m0, "layer_range": [1, 4]}]}]}, tmp_path)
    src = _load_model(m0)
    assert len({k for k in ours if k.endswith("mlp.up_proj.weight")}) == 6
    assert torch.equal(ours["model.layers.3.mlp.up_proj.weight"], src["model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(ours["model.layers.2.mlp.up_proj.weight"], src["model.layers.2.mlp.up_proj.weight"])


def test_model_stock(tiny_models, tmp_path):
    m0, m1, m2 = tiny_models
    assert_parity({"merge_method": "model_stock", "base_model": m0, "dtype": "float32",
                   "models": [{"model": m1}, {"model": m2}]}, tmp_path)


def test_lora_reference_model_plus_adapter(tiny_models, tmp_path):
    """mergekit's `BASE+ADAPTER` model reference: the LoRA is folded in before merging."""
    from peft import LoraConfig, get_peft_model

    from podium.models.io import load_model

    m0, m1, _ = tiny_models
    peft_model = get_peft_model(load_model(m1), LoraConfig(r=2, lora_alpha=4, target_modules=["v_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert_parity({"merge_method": "slerp", "base_model": m0, "parameters": {"t": 0.6}, "dtype": "float32",
                   "models": [{"model": m0}, {"model": f"{m1}+{tmp_path / 'adapter'}"}]}, tmp_path)


@pytest.mark.parametrize("method", ["linear", "slerp", "task_arithmetic", "ties", "model_stock"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_rounds_like_mergekit(tiny_models, tmp_path, method, dtype):
    """Real checkpoints are bf16/fp16: the merged tensors must round to the same values as mergekit's."""
    m0, m1, m2 = tiny_models
    two = {"weight": 0.6, "density": 0.5}, {"weight": 0.4, "density": 0.7}
    cfg = {
        "linear": {"models": [{"model": m0, "parameters": {"weight": 0.3}},
                              {"model": m1, "parameters": {"weight": 0.6}}]},
        "slerp": {"base_model": m0, "parameters": {"t": [0.1, 0.9]}, "models": [{"model": m0}, {"model": m1}]},
        "model_stock": {"base_model": m0, "models": [{"model": m1}, {"model": m2}]},
    }.get(method, {"base_model": m0, "models": [{"model": m1, "parameters": two[0]},
                                                {"model": m2, "parameters": two[1]}]})
    assert_parity({"merge_method": method, "dtype": dtype, **cfg}, tmp_path)


def test_passthrough_scale_filter(tiny_models, tmp_path):
    """Depth up-scaling variant that zeroes the duplicated layers' o_proj/down_proj through `scale`."""
    m0, _, _ = tiny_models
    zero_out = [{"filter": "o_proj", "value": 0.0}, {"filter": "down_proj", "value": 0.0}, {"value": 1.0}]
    ours = assert_parity({"merge_method": "passthrough", "dtype": "float32", "slices": [
        {"sources": [{"model": m0, "layer_range": [0, 4]}]},
        {"sources": [{"model": m0, "layer_range": [2, 4], "parameters": {"scale": zero_out}}]}]}, tmp_path)
    assert ours["model.layers.5.mlp.down_proj.weight"].abs().max() == 0
    assert ours["model.layers.5.mlp.up_proj.weight"].abs().max() > 0
