"""The benchmarks' `--preset` models (benchmarks/side_by_side.py): real shapes, no download, fast init.

The big presets are checked from their configs only (a meta-device build counts parameters without
memory); the expected numbers are restated here from the public config.json files of Qwen/Qwen2.5-0.5B
and meta-llama/Llama-3.2-1B, and the parameter counts derived independently from the shapes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.side_by_side import (  # noqa: E402
    PRESETS,
    attention_for,
    benchmark_model,
    build_preset,
    padded_tokenizer,
    podium_step_totals,
    preset_config,
    preset_parameters,
)

from podium.models.io import check_vocab, load_model, load_tokenizer  # noqa: E402
from podium.models.tiny import build_tokenizer  # noqa: E402

PUBLISHED = {  # config.json fields of the models the presets copy
    "qwen2.5-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
                     "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                     "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "tie_word_embeddings": True},
    "llama-1b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
                 "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                 "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
}
ROPE = {"qwen2.5-0.5b": (1e6, "default"), "llama-1b": (5e5, "llama3")}


def count_from_shapes(v, d, layers, heads, kv_heads, head_dim, mlp, qkv_bias, tied) -> int:
    """Embedding + per layer (q, k, v, o, optional q/k/v biases, gate/up/down, two RMSNorms) + final norm + head."""
    attn = d * heads * head_dim + 2 * d * kv_heads * head_dim + heads * head_dim * d
    bias = (heads + 2 * kv_heads) * head_dim if qkv_bias else 0
    layer = attn + bias + 3 * d * mlp + 2 * d
    return v * d + layers * layer + d + (0 if tied else v * d)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_big_presets_have_the_published_shapes(name):
    config = preset_config(name)
    for field, value in PUBLISHED[name].items():
        assert getattr(config, field) == value, field
    theta, rope_type = ROPE[name]
    assert config.rope_parameters["rope_theta"] == theta
    assert config.rope_parameters["rope_type"] == rope_type
    assert not getattr(config, "sliding_window", None)  # Qwen2.5: use_sliding_window false


def test_parameter_counts_from_config():
    qwen = count_from_shapes(151936, 896, 24, 14, 2, 64, 4864, qkv_bias=True, tied=True)
    llama = count_from_shapes(128256, 2048, 16, 32, 8, 64, 8192, qkv_bias=False, tied=True)
    assert preset_parameters(preset_config("qwen2.5-0.5b")) == qwen == 494_032_768  # "0.49B"
    assert preset_parameters(preset_config("llama-1b")) == llama == 1_235_814_400  # "1.23B"
    assert preset_parameters(preset_config("llama-tiny-32k")) == count_from_shapes(
        32000, 256, 4, 4, 4, 64, 768, qkv_bias=False, tied=False)


def test_padded_tokenizer_tokenises_as_the_character_tokenizer():
    tok, base = padded_tokenizer(32000), build_tokenizer()
    assert len(tok) == 32000
    text = "What is 2 + 3? hi\n"
    assert tok(text)["input_ids"] == base(text)["input_ids"]
    chat = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == \
        base.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert (tok.pad_token_id, tok.eos_token_id) == (base.pad_token_id, base.eos_token_id)
    assert tok.decode([31999]) == "<|unused_31999|>"  # every id a model can sample decodes


def test_tiny_32k_builds_saves_and_loads_through_benchmark_model():
    args = argparse.Namespace(model_dir=None, preset="llama-tiny-32k", device="cpu")
    _, n_params = benchmark_model(args, {}, "test-presets-")
    assert n_params == preset_parameters(preset_config("llama-tiny-32k"))
    folder = Path(args.model)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    model, tok = load_model(folder), load_tokenizer(folder)
    assert model.config.vocab_size == len(tok) == 32000
    check_vocab(model, tok)
    again, _ = build_preset("llama-tiny-32k")  # seed fixed: the same weights
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    w = model.model.layers[0].mlp.up_proj.weight.detach()
    assert abs(float(w.std()) - 0.02) < 1e-3 and abs(float(w.mean())) < 1e-3
    assert torch.equal(model.model.norm.weight, torch.ones(256))
    with torch.no_grad():
        logits = model(**tok(["hello there"], return_tensors="pt")).logits
    assert logits.shape == (1, 11, 32000) and torch.isfinite(logits).all()


def test_tied_presets_share_embedding_and_head():
    model, _ = build_preset("llama-tiny-32k")
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied, as configured
    config = preset_config("qwen2.5-0.5b")
    with torch.device("meta"):
        tied = AutoModelForCausalLM.from_config(config)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight


def test_attention_choice_and_step_totals():
    assert attention_for("cpu") == "sdpa"
    assert attention_for("cuda", "sdpa") == "sdpa"
    records = [{"pairs_per_second": 4.0, "tokens_per_second": 9.0, "flops_per_second": 100.0},
               {"pairs_per_second": 2.0, "tokens_per_second": 9.0, "flops_per_second": 50.0}]
    assert podium_step_totals(records, batch=8) == (2.0 + 4.0, 200.0 + 200.0)
    assert set(PRESETS) >= {"qwen2.5-0.5b", "llama-1b", "llama-tiny-32k"}
