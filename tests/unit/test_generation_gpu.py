"""GPU checks: the transformers sampler on CUDA and the vLLM backend (skipped without them)."""

import importlib.util

import pytest
import torch

from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams
from podium.models.io import save_model
from podium.models.tiny import build_tiny_model

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
PROMPTS = ["a", "the quick brown fox", [{"role": "user", "content": "What is 2+3?"}]]
GREEDY = SamplingParams(temperature=0, max_new_tokens=16)


@needs_cuda
def test_transformers_sampler_on_cuda_batched_equals_unbatched():
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    model.to("cuda")
    batched = TransformersSampler(model, tok, batch_size=8).generate(PROMPTS, 2, GREEDY)
    alone = [TransformersSampler(model, tok, batch_size=1).generate([p], 2, GREEDY)[0] for p in PROMPTS]
    assert [[c.token_ids for c in r] for r in batched] == [[c.token_ids for c in r] for r in alone]
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=16)
    a = TransformersSampler(model, tok, batch_size=8).generate(PROMPTS, 3, params, seed=1)
    b = TransformersSampler(model, tok, batch_size=8).generate(PROMPTS, 3, params, seed=1)
    assert [[c.token_ids for c in r] for r in a] == [[c.token_ids for c in r] for r in b]


@needs_cuda
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm")
def test_vllm_greedy_matches_transformers(tmp_path):
    from podium.generation.vllm_sampler import VLLMSampler

    model, tok = build_tiny_model(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2)
    path = save_model(model, tok, tmp_path / "tiny")
    ours = TransformersSampler(model.to("cuda"), tok).generate(PROMPTS, 1, GREEDY)
    theirs = VLLMSampler(str(path), dtype="float32", gpu_memory_utilization=0.3).generate(PROMPTS, 2, GREEDY)
    assert [len(r) for r in theirs] == [2, 2, 2]
    assert [r[0].token_ids for r in theirs] == [r[0].token_ids for r in ours]
    for o, t in zip(ours, theirs):
        assert t[0].logp_sum == pytest.approx(o[0].logp_sum, abs=1e-2)
