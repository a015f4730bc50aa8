"""Per-model choices made before training: attention implementation, exact layouts, clear refusals.

- Attention is chosen per architecture (eager for Gemma-2, sdpa where supported) and logged;
  a requested implementation the architecture or machine cannot run is a PodiumError naming it.
- A speed layout that would not be exact for a model is turned off for it, with a log line, and
  the fallback equals a plain forward; asked for anyway, it is a PodiumError, never a silent difference.
- A model podium cannot train exactly is refused before any training, naming the architecture.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import transformers
from tests.parity.families import FAMILIES, PAIRS, build_family

from podium.data.preference import tokenize_pairs
from podium.errors import PodiumError
from podium.models.io import load_model, save_model
from podium.stages import run_stage
from podium.training.attention_masks import check_causal, exact_layout
from podium.training.logps import pair_logps
from podium.training.pair_layout import pack_pairs
from podium.training.router_loss import router_aux_coef

EXPECTED_ATTENTION = {"llama3": "sdpa", "qwen2": "sdpa", "mistral": "sdpa", "mixtral": "sdpa", "gemma2": "eager"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for family in FAMILIES:
        model, tok = build_family(family)
        out[family] = save_model(model, tok, tmp_path_factory.mktemp(family) / "model")
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_is_chosen_per_architecture_and_logged(folders, family, caplog):
    with caplog.at_level(logging.INFO, logger="podium"):
        model = load_model(folders[family])
    assert model.config._attn_implementation == EXPECTED_ATTENTION[family]
    (line,) = [r.getMessage() for r in caplog.records if "attention" in r.getMessage()]
    assert type(model).__name__ in line and f"attention {EXPECTED_ATTENTION[family]}" in line


def test_requested_attention_the_architecture_lacks_is_a_clear_error(folders):
    with pytest.raises(PodiumError, match="Gemma2ForCausalLM does not support attn_implementation 'sdpa'"):
        load_model(folders["gemma2"], attn_implementation="sdpa")
    assert load_model(folders["gemma2"], attn_implementation="eager").config._attn_implementation == "eager"
    assert load_model(folders["llama3"], attn_implementation="eager").config._attn_implementation == "eager"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_flash_attention_without_cuda_is_a_clear_error(folders):
    with pytest.raises(PodiumError, match="flash_attention_2' needs a CUDA device"):
        load_model(folders["mistral"], attn_implementation="flash_attention_2")


def test_train_stage_refuses_before_training(folders, tmp_path):
    """Asked for sdpa on Gemma-2 (the issue's failing run), `podium train` stops before any step."""
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:4]))
    cfg = {"model": str(folders["gemma2"]), "data": str(tmp_path / "pairs.jsonl"), "max_steps": 1,
           "attn_implementation": "sdpa", "reference_cache_dir": str(tmp_path / "cache")}
    with pytest.raises(PodiumError, match="Gemma2ForCausalLM"):
        run_stage("train", cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def tiny_phi3():
    """An architecture outside podium's verified table (Phi-3 takes one mask, with a window)."""
    from podium.models.tiny import build_tokenizer

    tok = build_tokenizer()
    config = transformers.Phi3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    return transformers.Phi3ForCausalLM(config).eval(), tok


def test_unverified_architecture_falls_back_to_the_plain_layout(caplog):
    model, tok = tiny_phi3()
    log = logging.getLogger("podium")
    with caplog.at_level(logging.INFO, logger="podium"):
        layout = exact_layout(model, True, True, log)
    assert layout == (False, False)
    text = caplog.text
    assert "prefix_sharing off" in text and "padding_free off" in text and "Phi3ForCausalLM" in text
    examples, _ = tokenize_pairs(PAIRS[:3], tok, 64)
    with pytest.raises(PodiumError, match="prefix sharing cannot be exact for this model: Phi3ForCausalLM"):
        pair_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=True))
    with torch.no_grad():  # the fallback is the plain per-sequence forward
        got = pair_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=False)).logps
        ex = examples[0]
        ids = torch.tensor([ex["prompt_ids"] + ex["chosen_ids"]])
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
    assert got[0].item() == pytest.approx(logp[len(ex["prompt_ids"]) - 1:].sum().item(), rel=1e-5)


def test_attention_without_prepared_masks_turns_prefix_sharing_off(caplog):
    model, _ = build_family("mistral")
    model.config._attn_implementation = "flash_attention_2"  # no forward is run
    with caplog.at_level(logging.INFO, logger="podium"):
        assert exact_layout(model, True, False, logging.getLogger("podium")) == (False, False)
        assert exact_layout(model, True, True, logging.getLogger("podium")) == (False, True)
    assert "attention 'flash_attention_2' takes no prepared mask" in caplog.text


def test_bidirectional_model_is_refused_naming_the_architecture():
    model, _ = build_family("gemma2")
    model.config.use_bidirectional_attention = True
    with pytest.raises(PodiumError, match="Gemma2ForCausalLM is configured for bidirectional attention"):
        check_causal(model)


def test_router_loss_settings():
    mixtral, _ = build_family("mixtral")
    llama, _ = build_family("llama3")
    assert router_aux_coef(mixtral) == pytest.approx(0.02)  # the config's, as TRL takes it
    assert router_aux_coef(mixtral, 0.0) == 0.0 and router_aux_coef(mixtral, 0.5) == 0.5
    assert router_aux_coef(llama) == 0.0
    with pytest.raises(PodiumError, match="LlamaForCausalLM is not a mixture-of-experts"):
        router_aux_coef(llama, 0.01)
    llama.config.output_router_logits = False  # declares router logits but has no router
    with pytest.raises(PodiumError, match="LlamaForCausalLM declares router logits"):
        router_aux_coef(llama, 0.01)
