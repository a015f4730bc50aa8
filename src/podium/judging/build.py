"""Judges from recipe settings, behind one call: `judge(prompt, responses, answer=, task=)`."""

from __future__ import annotations

from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from podium.errors import ConfigError
from podium.judging.base import Judgement
from podium.judging.model_judges import GPMJudge, RewardJudge
from podium.judging.pairwise import PairwiseJudge
from podium.judging.verifier import VerifierJudge
from podium.tasks import get_task


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: Literal["verifier", "reward", "gpm", "pairrm"] = "verifier"
    model: str | None = Field(None, description="preference model folder (reward, gpm) or PairRM checkpoint")
    max_length: int | None = Field(None, ge=8)
    batch_size: int = Field(64, ge=1)


class RecordJudge:
    """Judges a prompt record's K responses; the verifier uses the record's gold answer and task."""

    def __init__(self, spec: JudgeSpec, judge=None):
        self.spec, self.inner = spec, judge

    def judge(self, prompt, responses, answer: str | None = None, task: str | None = None) -> Judgement:
        if self.spec.kind == "verifier":
            if answer is None or task is None:
                raise ConfigError("judge kind 'verifier' needs prompts with gold 'answer' and 'task' fields")
            family = get_task(task)
            if family.pairwise:  # the task's truth is a preference between responses (e.g. rps)
                return PairwiseJudge(lambda p, a, b: family.prefer(a, b)).preference_matrix(prompt, responses)
            return VerifierJudge(check=partial(family.check, answer=answer)).preference_matrix(prompt, responses)
        return self.inner.preference_matrix(prompt, responses)


def build_judge(spec: JudgeSpec) -> RecordJudge:
    if spec.kind == "verifier":
        return RecordJudge(spec)
    if spec.kind == "pairrm":
        from podium.judging.pairwise import PairRMJudge

        return RecordJudge(spec, PairRMJudge(spec.model or "llm-blender/PairRM"))
    if not spec.model:
        raise ConfigError(f"judge kind {spec.kind!r} needs 'model': a folder saved by `podium train` "
                          f"with objective {spec.kind}")
    from podium.models.heads import load_preference_model

    model, tokenizer = load_preference_model(spec.model)
    cls = RewardJudge if spec.kind == "reward" else GPMJudge
    return RecordJudge(spec, cls(model, tokenizer, max_length=spec.max_length, batch_size=spec.batch_size))
