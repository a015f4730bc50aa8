"""`kind: tiny_model` builds the embedded model in each seed card's family, with the same tokenizer and size."""

import pytest
import torch
import transformers

from podium.errors import ConfigError
from podium.models.io import load_model, load_tokenizer
from podium.models.tiny import FAMILIES, build_tiny_model, build_tokenizer
from podium.stages import run_stage

SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4}
CLASSES = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
           "gemma2": transformers.Gemma2ForCausalLM, "mistral": transformers.MistralForCausalLM,
           "mixtral": transformers.MixtralForCausalLM}


def test_the_default_llama_is_the_embedded_model_of_earlier_releases():
    """The llama family is LlamaForCausalLM(LlamaConfig(...)) as built before families existed: same weights."""
    tok = build_tokenizer()
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                                      tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id, bos_token_id=None, rms_norm_eps=1e-5)
    torch.manual_seed(7)
    expected = transformers.LlamaForCausalLM(config).state_dict()
    model, _ = build_tiny_model(tok, seed=7, **SIZE)
    got = model.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_stage_builds_each_family(family, tmp_path):
    metrics = run_stage("tiny_model", {"family": family, **SIZE}, tmp_path)
    model = load_model(str(tmp_path))
    assert type(model) is CLASSES[family]
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 4)
    tok = load_tokenizer(str(tmp_path))
    assert tok.get_vocab() == build_tokenizer().get_vocab() and config.vocab_size == len(tok)
    dense = sum(p.numel() for p in build_tiny_model(**SIZE)[0].parameters())
    # Comparable size: the dense families within a few percent of the Llama (biases, norms); Mixtral's 4 experts
    # of half the width hold twice the MLP weights, while a token's MLP computes as much as the dense one.
    limit = 1.6 if family == "mixtral" else 1.05
    assert dense / 1.05 <= metrics["parameters"] <= dense * limit
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_family_features():
    """What sets each family apart is on: qkv bias, soft-capping and local/global layers, a window, experts."""
    qwen, _ = build_tiny_model(family="qwen2", **SIZE)
    assert qwen.model.layers[0].self_attn.q_proj.bias is not None
    gemma = build_tiny_model(family="gemma2", **SIZE)[0].config
    assert (gemma.attn_logit_softcapping, gemma.final_logit_softcapping) == (50.0, 30.0)
    assert gemma.head_dim == 8 and gemma.query_pre_attn_scalar == 8 and gemma.sliding_window == 256
    assert gemma.layer_types == ["sliding_attention", "full_attention"]
    assert build_tiny_model(family="mistral", **SIZE)[0].config.sliding_window == 256
    mixtral = build_tiny_model(family="mixtral", **SIZE)[0].config
    assert (mixtral.num_local_experts, mixtral.num_experts_per_tok, mixtral.intermediate_size) == (4, 2, 32)


def test_unknown_family_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tiny models come in llama, qwen2"):
        build_tiny_model(family="falcon", **SIZE)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="family"):
        run_stage("tiny_model", {"family": "falcon"}, tmp_path)
