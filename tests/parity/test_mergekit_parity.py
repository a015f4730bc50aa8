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


def assert_parity(config: dict, tmp_path, mergekit_fails_after_weights: str | None = None) -> dict[str, torch.Tensor]:
    """Merge with both tools; every tensor equal to 1e-6 and the same depth in config.json.

    `mergekit_fails_after_weights`: the error mergekit is known to raise once its weights are
    written (then only the tensors are compared; the caller checks podium's config itself).
    """
    ours_dir = tmp_path / "podium"
    run_merge(parse_config(yaml.safe_load(yaml.safe_dump(config))), ours_dir)
    ours = _load(ours_dir)
    if mergekit_fails_after_weights:
        with pytest.raises(Exception, match=mergekit_fails_after_weights):
            mergekit_merge(config, tmp_path / "mergekit")
        theirs = _load(tmp_path / "mergekit")
        assert theirs, "mergekit wrote no weights before failing"
    else:
        theirs = mergekit_merge(config, tmp_path / "mergekit")
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype, name
        assert ours[name].shape == theirs[name].shape, name
        diff = (ours[name].double() - theirs[name].double()).abs().max().item()
        assert diff <= 1e-6, f"{name}: max abs diff {diff}"
    if mergekit_fails_after_weights:
        return ours
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


# --- model families (issue 14 item 5): gradient SLERP and depth up-scaling beyond Llama ----------------

SAKURA_T = [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]}, {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
            {"value": 0.5}]


def _family_model(family: str, seed: int):
    """A tiny random model of `family` (4 layers), every weight random, so no tensor is equal across seeds
    (norm weights included: initialised to ones or zeros they would make the merge trivial there)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

    from podium.models.tiny import build_tokenizer

    tok = build_tokenizer()
    common = {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "pad_token_id": tok.pad_token_id,
              "eos_token_id": tok.eos_token_id, "bos_token_id": None}
    if family == "gemma2":
        # alternating local (sliding) and global layers, soft-capping, four norms per layer, tied embeddings
        cfg = Gemma2Config(**common, head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
                           attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
        cls = Gemma2ForCausalLM
    else:
        cfg = MistralConfig(**common, sliding_window=4)  # a window shorter than the test sequence
        cls = MistralForCausalLM
    torch.manual_seed(seed)
    model = cls(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model, tok


@pytest.fixture(scope="module", params=["mistral", "gemma2"])
def family_models(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    paths = []
    for seed in range(2):
        model, tok = _family_model(request.param, seed)
        paths.append(str(save_model(model, tok, root / f"m{seed}")))
    return request.param, paths


def _runs_in_transformers(folder, family: str, num_layers: int):
    from podium.models.io import load_model

    model = load_model(folder)
    assert model.config.num_hidden_layers == num_layers == len(model.model.layers)
    ids = torch.arange(3, 15).reshape(1, -1)  # 12 tokens: longer than the sliding window of 4
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 12, model.config.vocab_size) and torch.isfinite(logits).all()
    return model


def test_family_gradient_slerp(family_models, tmp_path):
    """The Sakura-SOLAR gradient SLERP on Mistral- and Gemma-2-shaped models equals mergekit's."""
    family, (m0, m1) = family_models
    assert_parity({"merge_method": "slerp", "base_model": m0, "dtype": "float32",
                   "slices": [{"sources": [{"model": m1, "layer_range": [0, 4]}, {"model": m0, "layer_range": [0, 4]}]}],
                   "parameters": {"t": SAKURA_T}}, tmp_path)
    model = _runs_in_transformers(tmp_path / "podium", family, 4)
    if family == "gemma2":
        assert model.config.layer_types == ["sliding_attention", "full_attention"] * 2


def test_family_depth_upscaling(family_models, tmp_path):
    """SOLAR-style depth up-scaling, layers [0, 3) + [2, 4) -> 5 layers. The output's config says 5 layers and,
    for Gemma-2, each layer keeps the attention kind of the layer it was copied from: [local, global, local] +
    [local, global] (position 3 is a copy of local layer 2, where Gemma-2's default pattern would say global).

    mergekit 0.1.5 writes the same tensors but then cannot save Gemma-2's config: it keeps the base's
    4 `layer_types` for 5 layers, which transformers refuses. The tensors are compared all the same."""
    family, (m0, _) = family_models
    known = r"num_hidden_layers.*\(5\) must be equal to the number of .layer_types. \(4\)" if family == "gemma2" else None
    ours = assert_parity({"merge_method": "passthrough", "dtype": "float32", "slices": [
        {"sources": [{"model": m0, "layer_range": [0, 3]}]},
        {"sources": [{"model": m0, "layer_range": [2, 4]}]}]}, tmp_path, mergekit_fails_after_weights=known)
    src = _load_model(m0)
    assert torch.equal(ours["model.layers.3.mlp.up_proj.weight"], src["model.layers.2.mlp.up_proj.weight"])
    cfg = json.loads((tmp_path / "podium" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 5
    model = _runs_in_transformers(tmp_path / "podium", family, 5)
    if family == "gemma2":
        local, full = "sliding_attention", "full_attention"
        assert cfg["layer_types"] == model.config.layer_types == [local, full, local, local, full]
    else:
        assert cfg["sliding_window"] == 4


# --- DARE: random, so equal in distribution, not entry by entry (issue 15) ------------------------------

def _task_vectors(merged: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> torch.Tensor:
    """All tensors' merged − base, flattened into one vector (float64)."""
    return torch.cat([(merged[k].double() - base[k].double()).reshape(-1) for k in sorted(base)])


def _dare_runs(config: dict, tmp_path, seeds: range) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(podium, mergekit) task vectors of the merged models, one per seed."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge as mk_run_merge
    from mergekit.options import MergeOptions

    base = _load_model(config["base_model"])
    ours, theirs = [], []
    for seed in seeds:
        run_merge(parse_config(config), tmp_path / f"p{seed}", seed=seed)
        ours.append(_task_vectors(_load(tmp_path / f"p{seed}"), base))
        mk_run_merge(MergeConfiguration.model_validate(config), str(tmp_path / f"m{seed}"),
                     MergeOptions(quiet=True, random_seed=seed, write_model_card=False))
        theirs.append(_task_vectors(_load(tmp_path / f"m{seed}"), base))
    return ours, theirs


def test_dare_linear_matches_mergekit_in_distribution(tiny_models, tmp_path):
    """DARE drops entries at random: podium draws its mask from its own seeded stream (per tensor),
    mergekit from torch's global generator, so outputs differ entry by entry and "parity to 1e-6"
    does not apply. What must agree is the distribution. One task vector τ (weight 1, density 0.3):
    - drop rate: 70 % of τ's entries are dropped (binomial, n ≈ 58k: ± 0.6 % at 3 σ);
    - rescale: each kept entry is scaled so the tensor's L1 norm stays |τ|_1, i.e. by ≈ 1/0.3;
    - unbiased: the mean over S = 8 seeds tends to τ; its relative L2 error is
      sqrt((1 − d) / (d·S)) = sqrt(0.7 / 2.4) = 0.540 for both tools."""
    m0, m1, _ = tiny_models
    config = {"merge_method": "dare_linear", "base_model": m0, "dtype": "float32",
              "models": [{"model": m1, "parameters": {"weight": 1.0, "density": 0.3}}]}
    ours, theirs = _dare_runs(config, tmp_path, range(8))
    tau = _task_vectors(_load_model(m1), _load_model(m0))
    moving = tau != 0  # identical tensors (e.g. norms initialised to 1) have nothing to drop
    for name, runs in (("podium", ours), ("mergekit", theirs)):
        for v in runs:
            kept = (v[moving] != 0).double().mean().item()
            assert abs(kept - 0.3) < 0.006, f"{name}: kept fraction {kept:.4f}"
            scale = (v[moving][v[moving] != 0] / tau[moving][v[moving] != 0]).median().item()
            assert abs(scale - 1 / 0.3) < 0.1, f"{name}: rescale factor {scale:.3f}"
            assert v.abs().sum().item() == pytest.approx(tau.abs().sum().item(), rel=1e-4)
        err = ((torch.stack(runs).mean(0) - tau).norm() / tau.norm()).item()
        assert err == pytest.approx(0.540, abs=0.03), f"{name}: relative error of the seed mean {err:.3f}"
    assert not torch.equal(ours[0], ours[1])  # a new seed, a new mask


def test_dare_ties_matches_mergekit_in_distribution(tiny_models, tmp_path):
    """Two task vectors (weights 0.6 / 0.4, density 0.5) with TIES sign election. No closed form here,
    so each statistic is compared across the tools: the fraction of entries that change, the mean L1
    size of the merged task vector, and the distance between the tools' seed means, which must be no
    larger than the distance between two independent podium seed means (same distribution)."""
    m0, m1, m2 = tiny_models
    config = {"merge_method": "dare_ties", "base_model": m0, "dtype": "float32",
              "models": [{"model": m1, "parameters": {"weight": 0.6, "density": 0.5}},
                         {"model": m2, "parameters": {"weight": 0.4, "density": 0.5}}]}
    ours, theirs = _dare_runs(config, tmp_path, range(12))
    changed = [torch.stack([(v != 0).double().mean() for v in runs]).mean().item() for runs in (ours, theirs)]
    assert changed[0] == pytest.approx(changed[1], abs=0.005)
    l1 = [torch.stack([v.abs().sum() for v in runs]).mean().item() for runs in (ours, theirs)]
    assert l1[0] == pytest.approx(l1[1], rel=0.01)
    between = (torch.stack(ours[:6]).mean(0) - torch.stack(theirs[:6]).mean(0)).norm().item()
    within = (torch.stack(ours[:6]).mean(0) - torch.stack(ours[6:]).mean(0)).norm().item()
    assert between < 1.15 * within, (between, within)
