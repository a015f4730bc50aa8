"""Judges from recipe settings, behind one call: `judge(prompt, responses, answer=, task=)`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub import snapshot_download
from pydantic import BaseModel, ConfigDict, Field, model_validator

from podium.data.chat import as_messages
from podium.distributed.world import device as process_device
from podium.errors import ConfigError, PodiumError
from podium.judging.base import Judgement
from podium.judging.graded import DEFAULT_TAU, judge_graded
from podium.judging.model_judges import GPMJudge, RewardJudge
from podium.judging.pairrm import PairRMJudge, last_user_text
from podium.judging.pairwise import PairwiseJudge
from podium.judging.verifier import VerifierJudge
from podium.models import io
from podium.models.pairrm import load_pairrm
from podium.models.preference_folders import load_preference_folder
from podium.models.publish import HUB_MODEL_PATTERNS
from podium.refs import ModelRef
from podium.tasks import get_task

# The files a preference model needs from the Hub (podium's layout or the GPM code's); no pickles, no code.


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: Literal["verifier", "graded", "reward", "gpm", "pairrm"] = "verifier"
    model: ModelRef | None = Field(None, description="preference model folder or Hub id (reward, gpm: podium's layout "
                                   "or, for gpm, the GPM code's released checkpoints) or PairRM checkpoint")
    max_length: int | None = Field(None, ge=8)
    batch_size: int = Field(64, ge=1, description="sequences per forward pass (pairrm: pair sequences)")
    max_batch_tokens: int | None = Field(None, ge=64, description="pairrm: padded tokens per forward pass "
                                         "(default 16384 on CUDA, 2048 on CPU); pair sequences are sorted by length "
                                         "and packed")
    gpm_probability: Literal["released", "loss"] | None = Field(
        None, description="gpm: 'released' (default) P_ij = sigma((s_ij - s_ji)/tau) as the GPM code's SPPO/GPO "
        "scripts; 'loss' P_ij = sigma(s_ij/tau), the probability the GPM loss fits")
    tau: float | None = Field(None, gt=0, description="gpm: temperature (default: the folder's; 0.1 for the GPM code's "
                              "checkpoints, which do not store it); graded: P_ij = sigma((c_i - c_j)/tau) on the task's "
                              "partial credit (default 0.25)")
    pairrm_mode: Literal["sppo", "pairwise"] | None = Field(
        None, description="pairrm: 'sppo' (default) P_ij = sigma(s_i - s_j) on llm-blender's aggregated scores, as the "
        "SPPO code; 'pairwise' P_ij = sigma(C_ij - C_ji), Blender.compare's logit")
    prompt_template: ModelRef | None = Field(
        None, description="pairrm: render the prompt with this model's chat template before PairRM reads it, as the "
        "SPPO code's rank.py does with the policy's (default: the prompt's last message as plain text)")

    @model_validator(mode="after")
    def _settings_of_the_kind(self):
        own = {"gpm_probability": "gpm", "tau": "gpm", "pairrm_mode": "pairrm", "prompt_template": "pairrm",
               "max_batch_tokens": "pairrm"}
        for name, kind in own.items():
            if getattr(self, name) is not None and self.kind != kind and (name, self.kind) != ("tau", "graded"):
                raise ValueError(f"{name} is a setting of judge kind {kind!r}, not {self.kind!r}")
        return self


class RecordJudge:
    """Judges a prompt record's K responses; the verifier uses the record's gold answer and task."""

    def __init__(self, spec: JudgeSpec, judge=None):
        self.spec, self.inner = spec, judge

    def judge(self, prompt, responses, answer: str | None = None, task: str | None = None) -> Judgement:
        if self.spec.kind in ("verifier", "graded") and (answer is None or task is None):
            raise ConfigError(f"judge kind {self.spec.kind!r} needs prompts with gold 'answer' and 'task' fields")
        if self.spec.kind == "graded":
            return judge_graded(prompt, responses, answer, task, tau=self.spec.tau or DEFAULT_TAU)
        if self.spec.kind == "verifier":
            family = get_task(task)
            if family.pairwise:  # the task's truth is a preference between responses (e.g. rps)
                return PairwiseJudge(lambda p, a, b: family.prefer(a, b)).preference_matrix(prompt, responses)
            return VerifierJudge(check=partial(family.check, answer=answer)).preference_matrix(prompt, responses)
        return self.inner.preference_matrix(prompt, responses)

    def judge_many(self, items) -> list[Judgement]:
        """`judge` of each (prompt, responses, answer, task); a judge that batches across prompts (PairRM) gets them all."""
        batched = getattr(self.inner, "judge_many", None)
        if self.spec.kind != "verifier" and batched is not None:
            return batched([(prompt, responses) for prompt, responses, *_ in items])
        return [self.judge(prompt, responses, answer=answer, task=task) for prompt, responses, answer, task in items]


def model_folder(ref: str) -> Path:
    """A local folder as it is; a Hub id fetched (safetensors, configs, tokenizer files only) into the Hub cache."""
    path = Path(ref)
    if path.exists():
        return path
    try:
        return Path(snapshot_download(ref, allow_patterns=HUB_MODEL_PATTERNS))
    except Exception as e:  # noqa: BLE001 - any Hub failure (offline, unknown repo, gated) is the user's input
        raise PodiumError(f"judge model {ref!r}: not a local folder, and the Hub did not give it ({io.first_line(e)})") from None


def template_prompt(tokenizer, prompt) -> str:
    """The prompt as SPPO's rank.py (`apply_template`) hands it to PairRM: the chat template's text of the prompt
    followed by an assistant turn "None", cut before the first "None".

    That is the template's text up to where the assistant's content starts (the assistant header included,
    as a generation prompt would add it). Where it matters: a prompt whose own text contains "None" is cut
    there too, as in the SPPO code ("Return None when ..." reaches PairRM as "... Return ").
    """
    turns = as_messages(prompt, "user") + [{"role": "assistant", "content": "None"}]
    return tokenizer.apply_chat_template(turns, tokenize=False).split("None")[0]


def build_judge(spec: JudgeSpec, *, progress: bool = False, device=None) -> RecordJudge:
    """The judge of `spec`, its model (PairRM, reward, GPM) on `device`: default this process's device, the one the
    policy and its sampler use (a launch's rank: its own GPU; else CUDA when present, else CPU)."""
    device = torch.device(device) if device is not None else process_device()
    if spec.kind in ("verifier", "graded"):
        return RecordJudge(spec)
    if spec.kind == "pairrm":
        prompt_text = last_user_text
        if spec.prompt_template:
            prompt_text = partial(template_prompt, io.load_tokenizer(spec.prompt_template))
        pairrm = load_pairrm(spec.model or "llm-blender/PairRM", device=device)
        return RecordJudge(spec, PairRMJudge(pairrm, mode=spec.pairrm_mode or "sppo", prompt_text=prompt_text,
                                             batch_size=spec.batch_size, max_batch_tokens=spec.max_batch_tokens,
                                             progress=progress))
    if not spec.model:
        raise ConfigError(f"judge kind {spec.kind!r} needs 'model': a folder saved by `podium train` "
                          f"with objective {spec.kind}" + (" or a GPM checkpoint of the GPM code" if spec.kind == "gpm" else ""))
    folder = load_preference_folder(model_folder(spec.model), tau=spec.tau)
    if folder.model.kind != spec.kind:
        raise ConfigError(f"judge kind {spec.kind!r}, but {spec.model} holds a {folder.model.kind!r} model")
    folder.model.to(device)
    kw = {"max_length": spec.max_length, "batch_size": spec.batch_size, "encode": folder.encode}
    if spec.kind == "reward":
        return RecordJudge(spec, RewardJudge(folder.model, folder.tokenizer, **kw))
    return RecordJudge(spec, GPMJudge(folder.model, folder.tokenizer, probability=spec.gpm_probability or "released", **kw))
