"""Pure next-token selection: worked examples for top-k, top-p and inverse-CDF sampling."""

import math

import pytest
import torch

from podium.errors import ConfigError
from podium.generation.sampler import SamplingParams, sequence_seed
from podium.generation.sampling import filter_logits, sample_inverse_cdf, select_next_tokens, token_logprobs


def logits_of(probs):
    return torch.tensor([[math.log(p) for p in probs]])


def test_top_p_keeps_smallest_set_reaching_mass():
    """probs [0.15, 0.5, 0.05, 0.3]; sorted 0.5, 0.3, 0.15, 0.05 with mass before 0, 0.5, 0.8, 0.95.

    top_p=0.7 keeps tokens whose mass before is < 0.7: ids 1 and 3. top_p=0.85 also keeps id 0.
    """
    logits = logits_of([0.15, 0.5, 0.05, 0.3])
    kept = torch.isfinite(filter_logits(logits, 1.0, top_p=0.7))[0].tolist()
    assert kept == [False, True, False, True]
    kept = torch.isfinite(filter_logits(logits, 1.0, top_p=0.85))[0].tolist()
    assert kept == [True, True, False, True]


def test_top_p_tiny_keeps_the_most_likely_token():
    kept = torch.isfinite(filter_logits(logits_of([0.15, 0.5, 0.05, 0.3]), 1.0, top_p=1e-6))[0].tolist()
    assert kept == [False, True, False, False]


def test_top_k_and_temperature():
    """logits [1, 3, 2, 0] at temperature 2 -> [0.5, 1.5, 1, 0]; top_k=2 keeps 1.5 and 1."""
    out = filter_logits(torch.tensor([[1.0, 3.0, 2.0, 0.0]]), 2.0, top_k=2)
    assert out[0, 1].item() == 1.5 and out[0, 2].item() == 1.0
    assert torch.isinf(out[0, 0]) and torch.isinf(out[0, 3])


def test_inverse_cdf_worked_example():
    """probs [0.25, 0, 0.5, 0.25] -> CDF [0.25, 0.25, 0.75, 1]; pick the first index with CDF >= u.

    u=0.25 -> 0; u=0.26 -> 2 (the zero-probability id 1 is skipped); u=0.75 -> 2; u=0.76 -> 3; u=1 -> 3.
    """
    probs = torch.tensor([[0.25, 0.0, 0.5, 0.25]]).repeat(5, 1)
    u = torch.tensor([0.25, 0.26, 0.75, 0.76, 1.0])
    assert sample_inverse_cdf(probs, u).tolist() == [0, 2, 2, 3, 3]


def test_inverse_cdf_unnormalised_probs():
    """Scaling the row by 4 changes nothing: the target is u times the row total."""
    probs = torch.tensor([[1.0, 0.0, 2.0, 1.0]])
    assert sample_inverse_cdf(probs, torch.tensor([0.26])).tolist() == [2]


def test_top_k_1_is_argmax_for_any_uniform():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    u = torch.rand(6, generator=torch.Generator().manual_seed(1)) * 0.999 + 0.001
    assert torch.equal(select_next_tokens(logits, u, 1.3, top_k=1), logits.argmax(-1))
    assert torch.equal(select_next_tokens(logits, None, 0.0), logits.argmax(-1))


def test_token_logprobs_at_temperature_one():
    """logits [0, ln 3] -> probs [1/4, 3/4]; log-prob of id 1 is ln 0.75."""
    lp = token_logprobs(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1]))
    assert lp.item() == pytest.approx(math.log(0.75), abs=1e-6)


def test_sampling_params_validation_and_seeds():
    with pytest.raises(ConfigError):
        SamplingParams(top_p=0.0)
    with pytest.raises(ConfigError):
        SamplingParams(temperature=-1)
    assert SamplingParams(temperature=0).greedy
    assert sequence_seed(0, 1, 2) == sequence_seed(0, 1, 2)
    assert len({sequence_seed(0, 1, 2), sequence_seed(0, 2, 1), sequence_seed(1, 1, 2)}) == 3


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.6), (8, 0.9)])
def test_filters_match_transformers_warpers(top_k, top_p):
    """Peer oracle: transformers' Temperature/TopK/TopP logits warpers keep the same tokens."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = torch.randn(16, 40, generator=torch.Generator().manual_seed(top_k))
    expected = TemperatureLogitsWarper(0.7)(None, logits.clone())
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1:
        expected = TopPLogitsWarper(top_p)(None, expected)
    ours = filter_logits(logits, 0.7, top_k, top_p)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(expected))
    assert torch.allclose(ours[torch.isfinite(ours)], expected[torch.isfinite(expected)])


def test_inverse_cdf_frequencies_follow_probs():
    """16000 evenly spaced uniforms k/16000 land on each token in proportion to its probability.

    probs [1/8, 0, 5/8, 1/4] (exact in binary): 2000, 0, 10000 and 4000 draws.
    """
    probs = torch.tensor([0.125, 0.0, 0.625, 0.25])
    u = (torch.arange(16000, dtype=torch.float64) + 1) / 16000
    counts = torch.bincount(sample_inverse_cdf(probs.expand(16000, 4), u), minlength=4)
    assert counts.tolist() == [2000, 0, 10000, 4000]
