"""Judges: K×K matrices with P_ii = 1/2, worked examples, invalid responses dropped and counted."""

import pytest
import torch

from podium.judging import (
    ConcatPairScorer,
    GPMJudge,
    PairwiseJudge,
    RewardJudge,
    VerifierJudge,
    judge_prompts,
    win_probabilities,
)
from podium.models.heads import GPMModel, RewardModel
from podium.models.tiny import build_tiny_model

RESPONSES = ["4", "5", "four", "22"]


@pytest.fixture(scope="module")
def backbone():
    return build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                            max_position_embeddings=64, seed=0)


@pytest.fixture(scope="module")
def reward_judge(backbone):
    lm, tok = backbone
    torch.manual_seed(0)
    return RewardJudge(RewardModel(lm), tok)


@pytest.fixture(scope="module")
def gpm_judge(backbone):
    lm, tok = backbone
    torch.manual_seed(0)
    return GPMJudge(GPMModel(lm, k=2, gates="softmax"), tok)


def test_win_probabilities_worked_example():
    """P = [[.5, 1, .8], [0, .5, .2], [.2, .8, .5]] -> row means [2.3/3, .7/3, 1.5/3]."""
    P = torch.tensor([[0.5, 1.0, 0.8], [0.0, 0.5, 0.2], [0.2, 0.8, 0.5]])
    assert torch.allclose(win_probabilities(P), torch.tensor([2.3, 0.7, 1.5]) / 3)


def test_verifier_matrix_worked_example():
    """Correct = [1, 0, 0, 1] (answers "4" and "22" accepted).

    P_ij = (c_i − c_j + 1)/2: row 0 = [.5, 1, 1, .5]; row 1 = [0, .5, .5, 0];
    win probabilities = [3/4, 1/4, 1/4, 3/4].
    """
    judge = VerifierJudge(lambda r: r in {"4", "22"})
    j = judge.preference_matrix("2+2?", RESPONSES)
    assert j.valid
    assert j.matrix.tolist() == [[0.5, 1, 1, 0.5], [0, 0.5, 0.5, 0], [0, 0.5, 0.5, 0], [0.5, 1, 1, 0.5]]
    assert win_probabilities(j.matrix).tolist() == [0.75, 0.25, 0.25, 0.75]


def test_verifier_check_for_builds_the_checker_from_the_prompt():
    answers = {"2+2?": "4", "3+3?": "6"}
    judge = VerifierJudge(check_for=lambda prompt: lambda r: r == answers[prompt])
    assert judge.preference_matrix("3+3?", ["6", "4"]).matrix.tolist() == [[0.5, 1], [0, 0.5]]


def test_reward_judge_is_sigmoid_of_reward_differences(reward_judge):
    j = reward_judge.preference_matrix("2+2?", RESPONSES)
    P = j.matrix
    assert P.shape == (4, 4) and (P.diagonal() == 0.5).all()
    assert torch.allclose(P + P.T, torch.ones(4, 4), atol=1e-6)
    # Recompute the rewards one at a time: P_01 = σ(r_0 − r_1).
    from podium.data.response_batches import make_pair_collate
    rec = [{"prompt": "2+2?", "chosen": RESPONSES[0], "rejected": RESPONSES[1]}]
    with torch.no_grad():
        z = reward_judge.model.pair_logits(make_pair_collate(reward_judge.tokenizer)(rec))
    assert torch.isclose(P[0, 1], torch.sigmoid(z[0]), atol=1e-5)


def test_gpm_judge_matrix_is_a_tournament(gpm_judge):
    P = gpm_judge.preference_matrix("2+2?", RESPONSES).matrix
    assert P.shape == (4, 4) and (P.diagonal() == 0.5).all()
    assert torch.allclose(P + P.T, torch.ones(4, 4), atol=1e-6)
    assert ((P >= 0) & (P <= 1)).all()


def test_pairwise_judge_makes_k_times_k_minus_1_calls_and_symmetrises():
    calls = []

    def scorer(prompt, a, b):
        calls.append((a, b))
        return 0.9 if len(a) > len(b) else 0.3  # a position-biased scorer: ties give 0.3, not 0.5

    P = PairwiseJudge(scorer).preference_matrix("q", ["aa", "b", "c"]).matrix
    assert len(calls) == 3 * 2
    # "b" vs "c": f = 0.3 both ways -> (0.3 + 1 − 0.3)/2 = 0.5. "aa" vs "b": (0.9 + 1 − 0.3)/2 = 0.8.
    assert torch.allclose(P, torch.tensor([[0.5, 0.8, 0.8], [0.2, 0.5, 0.5], [0.2, 0.5, 0.5]]))
    raw = PairwiseJudge(scorer, symmetrize=False).preference_matrix("q", ["aa", "b", "c"]).matrix
    assert torch.allclose(raw, torch.tensor([[0.5, 0.9, 0.9], [0.3, 0.5, 0.3], [0.3, 0.3, 0.5]]))


def test_concat_pair_scorer_through_pairwise_judge(backbone):
    lm, tok = backbone
    torch.manual_seed(0)
    judge = PairwiseJudge(ConcatPairScorer(RewardModel(lm), tok, batch_size=5), batched=True)
    P = judge.preference_matrix("2+2?", RESPONSES[:3]).matrix
    assert P.shape == (3, 3) and (P.diagonal() == 0.5).all()
    assert torch.allclose(P + P.T, torch.ones(3, 3), atol=1e-6)


@pytest.mark.parametrize("name", ["verifier", "reward", "gpm", "pairwise"])
def test_empty_response_marks_the_prompt_invalid(name, reward_judge, gpm_judge):
    judge = {"verifier": VerifierJudge(lambda r: True), "reward": reward_judge, "gpm": gpm_judge,
             "pairwise": PairwiseJudge(lambda p, a, b: 0.5)}[name]
    j = judge.preference_matrix("2+2?", ["4", "  ", "5"])
    assert not j.valid and j.matrix is None and j.invalid == [1] and j.reason == "empty response"


@pytest.mark.parametrize("name", ["reward", "gpm"])
def test_too_long_response_marks_the_prompt_invalid(name, reward_judge, gpm_judge):
    judge = {"reward": reward_judge, "gpm": gpm_judge}[name]
    j = judge.preference_matrix("2+2?", ["4", "x" * 100])  # context is 64 tokens
    assert not j.valid and j.invalid == [1] and j.reason == "too long"


def test_judge_prompts_drops_and_counts_invalid_prompts(gpm_judge):
    prompts = ["a?", "b?", "c?", "d?"]
    responses = [["1", "2"], ["", "2"], ["1", "y" * 100], ["3", "4"]]
    report = judge_prompts(gpm_judge, prompts, responses)
    assert sorted(report.judgements) == [0, 3]
    assert report.dropped == {"empty response": 1, "too long": 1} and report.dropped_total == 2


def test_model_judges_give_the_same_matrix_one_response_per_pass(reward_judge, gpm_judge):
    for judge in (reward_judge, gpm_judge):
        full = judge.preference_matrix("2+2?", RESPONSES).matrix
        judge.batch_size = 1
        try:
            single = judge.preference_matrix("2+2?", RESPONSES).matrix
        finally:
            judge.batch_size = 64
        assert torch.allclose(full, single, atol=1e-5)


def test_pairwise_judge_rejects_a_scorer_returning_logits():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PairwiseJudge(lambda p, a, b: 2.5).preference_matrix("q", ["a", "b"])
