"""The self-play judges run on the rank's device (the one its policy and sampler use), not always on the CPU.

No GPU here: the "meta" device stands for the rank's accelerator (a model moved there has no storage, so a model
left on the CPU would show), and a model that records its inputs' device stands for a forward pass there.
"""

from __future__ import annotations

import pytest
import torch
from tests.pairrm_fixtures import build_tiny_pairrm

from podium.judging import build
from podium.judging.build import JudgeSpec, build_judge
from podium.judging.model_judges import GPMJudge, RewardJudge

META = torch.device("meta")


@pytest.fixture(scope="module")
def folders(tiny_dir, tmp_path_factory):
    from transformers import AutoModel

    from podium.models.heads import build_preference_model
    from podium.models.io import load_tokenizer, save_model

    root = tmp_path_factory.mktemp("judges")
    out = {}
    for kind, kw in [("reward", {}), ("gpm", {"k": 2})]:
        torch.manual_seed(0)
        save_model(build_preference_model(kind, AutoModel.from_pretrained(tiny_dir), **kw), load_tokenizer(tiny_dir),
                   root / kind)
        out[kind] = root / kind
    out["pairrm"] = build_tiny_pairrm(root / "pairrm")["llm-blender"]
    return out


def model_of(judge):
    return judge.inner.pairrm.model if judge.spec.kind == "pairrm" else judge.inner.model


@pytest.mark.parametrize("kind", ["reward", "gpm", "pairrm"])
def test_the_judge_is_built_on_the_process_device(folders, kind, monkeypatch):
    """build_judge's default device is the process's (`podium.distributed.world.device`: a launch's rank, its own
    GPU); an explicit one is taken as given."""
    monkeypatch.setattr(build, "process_device", lambda: META)
    judge = build_judge(JudgeSpec(kind=kind, model=str(folders[kind])))
    assert {p.device for p in model_of(judge).parameters()} == {META}
    if kind == "pairrm":
        assert judge.inner.pairrm.device == META
    monkeypatch.setattr(build, "process_device", lambda: torch.device("cpu"))
    assert {p.device for p in model_of(build_judge(JudgeSpec(kind=kind, model=str(folders[kind])),
                                                   device="meta")).parameters()} == {META}


class RecordingModel(torch.nn.Module):
    """A preference model on `meta` that records where its inputs are and answers on the CPU."""

    max_length, tau = 64, 1.0

    def __init__(self, gpm: bool):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device=META))
        self.gpm, self.seen = gpm, []

    def forward(self, input_ids, attention_mask, prompt_lengths):
        self.seen += [t.device for t in (input_ids, attention_mask, prompt_lengths)]
        n = len(input_ids)
        return (torch.arange(2.0 * n).view(n, 2), None) if self.gpm else torch.arange(float(n))


@pytest.mark.parametrize("judge_class", [RewardJudge, GPMJudge])
def test_model_judges_feed_the_models_device_and_answer_on_the_cpu(tiny_dir, judge_class):
    from podium.models.io import load_tokenizer

    model = RecordingModel(gpm=judge_class is GPMJudge)
    judgement = judge_class(model, load_tokenizer(tiny_dir), batch_size=2).preference_matrix("2+2?", ["4", "5", "four"])
    assert model.seen and set(model.seen) == {META}
    assert judgement.valid and judgement.matrix.device.type == "cpu" and judgement.matrix.shape == (3, 3)
