"""podium.judging: preference-model objectives and judges (K×K preference matrices)."""

from podium.judging.base import Judge, Judgement, JudgeReport, judge_prompts, win_probabilities
from podium.judging.model_judges import GPMJudge, RewardJudge
from podium.judging.pairrm import PairRMJudge
from podium.judging.pairwise import ConcatPairScorer, PairwiseJudge
from podium.judging.verifier import VerifierJudge

__all__ = [
    "ConcatPairScorer", "GPMJudge", "Judge", "JudgeReport", "Judgement", "PairRMJudge", "PairwiseJudge",
    "RewardJudge", "VerifierJudge", "judge_prompts", "win_probabilities",
]
