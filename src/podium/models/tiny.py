"""The embedded default: a tiny model of a seed card's family and a character-level chat tokenizer, built offline.

Both are ordinary transformers objects saved with `save_pretrained`, so every later
stage loads them through the same code path as a Hub model id. The families are the seed
cards' (DESIGN.md "Model families"): Llama-3 (the default), Qwen2, Gemma-2, Mistral/SOLAR and
Mixtral, each its own transformers config class at the same width, depth and heads, with the
tokenizer below, so one recipe runs on each by changing `family:` alone.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from podium.errors import ConfigError

PAD, UNK, EOS = "<pad>", "<unk>", "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, UNK, EOS, *ROLE_TOKENS]
CHARS = list(string.digits + string.ascii_letters + string.punctuation + " \n")

# Turns end with EOS, so generation stops at the end of the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer with chat special tokens and a chat template."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # One character a token; "[\\s\\S]", not ".", which skips newlines ("\n\n" would be one unknown token).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        additional_special_tokens=ROLE_TOKENS,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


FAMILIES = ("llama", "qwen2", "gemma2", "mistral", "mixtral")
MIXTRAL_EXPERTS, MIXTRAL_EXPERTS_PER_TOKEN = 4, 2


def tiny_config(
    family: str,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 128,
    intermediate_size: int = 384,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = False,
    **family_settings,
) -> PretrainedConfig:
    """The transformers config of a tiny `family` model; `family_settings` override the family's own keys.

    Shared: width, depth, heads and vocabulary. Each family keeps what sets it apart, at its own
    defaults where they fit this size and scaled where they do not:
    - llama: Llama-3's block (RMSNorm eps 1e-5, SwiGLU, RoPE); the embedded default of earlier releases.
    - qwen2: biases on q, k and v; RMSNorm eps 1e-6.
    - gemma2: GeGLU, pre- and post-norms, sqrt(hidden)-scaled embeddings, attention and final-logit
      soft-capping (50, 30), alternating sliding-window and global layers with the window at half the
      context (Gemma-2: 4096 of 8192), query scaling by the head dim.
    - mistral: a sliding window of half the context on every layer (Mistral-7B-v0.1: 4096).
    - mixtral: Mistral's block with 4 experts, 2 active per token, each of intermediate_size / 2, so a
      token's MLP costs what the dense families' costs (Mixtral: 8 experts, 2 active); router loss 0.02.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; tiny models come in {', '.join(FAMILIES)}")
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
                  num_hidden_layers=num_layers, num_attention_heads=num_heads,
                  num_key_value_heads=num_kv_heads or num_heads, max_position_embeddings=max_position_embeddings,
                  tie_word_embeddings=tie_word_embeddings, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    window = max(1, max_position_embeddings // 2)
    if family == "llama":
        own = dict(rms_norm_eps=1e-5)
        cls = LlamaConfig
    elif family == "qwen2":
        own, cls = {}, Qwen2Config
    elif family == "gemma2":
        head_dim = hidden_size // num_heads
        own = dict(head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=window)
        cls = Gemma2Config
    elif family == "mistral":
        own, cls = dict(sliding_window=window), MistralConfig
    else:
        own = dict(num_local_experts=MIXTRAL_EXPERTS, num_experts_per_tok=MIXTRAL_EXPERTS_PER_TOKEN,
                   intermediate_size=max(1, intermediate_size // MIXTRAL_EXPERTS_PER_TOKEN),
                   router_aux_loss_coef=0.02)  # Mixtral-8x7B's config.json
        cls = MixtralConfig
    return cls(**{**common, **own, **family_settings})


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast | None = None,
    *,
    family: str = "llama",
    hidden_size: int = 128,
    intermediate_size: int = 384,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = False,
    seed: int = 0,
    **family_settings,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised `family` model (`tiny_config`) sized for CPU tests and the quickstart."""
    tokenizer = tokenizer or build_tokenizer()
    config = tiny_config(family, tokenizer, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
                         max_position_embeddings=max_position_embeddings, tie_word_embeddings=tie_word_embeddings,
                         **family_settings)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer
