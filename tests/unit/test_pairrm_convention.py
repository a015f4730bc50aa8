"""PairRM judge: the SPPO code's convention on a stub ranker with fixed logits (no weights, no llm-blender).

The stub plays llm-blender 0.0.2's `Blender` at the level podium calls it. Its PairRM is a fixed
K x K matrix C of one-direction logits (C_ij: "i, shown first, beats j"; C_ii = 0), and it answers
as llm-blender's code does:
- `rank(..., return_scores=True)`: `_full_predict` fills C, `get_scores_from_cmps` (policy
  "max_logits") returns s_i = mean_j (C_ij - C_ji);
- `compare(a, b, return_logits=True)` in the default mode "[A,B]+[B,A]": `rank` on [a, b] and
  s_a - s_b = C_ab - C_ba.
The expected numbers are SPPO's `scripts/compute_prob.py` formulas worked by hand in the docstrings:
P_ij = 1 / (1 + exp(s_j - s_i)), p_k = sum_j P_kj / K, chosen = argmax s, rejected = argmin s,
chosen_probs = P[chosen][rejected].
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from podium.errors import PodiumError
from podium.judging import PairRMJudge, PairwiseJudge, win_probabilities
from podium.judging import pairwise as pairwise_module
from podium.judging.build import JudgeSpec, build_judge
from podium.models.tiny import build_tokenizer
from podium.selfplay.targets import sppo_pair

RESPONSES = ["r0", "r1", "r2", "r3", "r4"]


class StubBlender:
    """llm-blender's Blender answering from fixed pairwise logits `C[text_i][text_j]`."""

    def __init__(self, C: dict[str, dict[str, float]]):
        self.C, self.calls = C, []

    def _c(self, a, b):
        return 0.0 if a == b else self.C[a][b]

    def rank(self, inputs, candidates, instructions=None, return_scores=False, batch_size=8, disable_tqdm=False):
        self.calls.append(("rank", list(inputs), [list(c) for c in candidates], return_scores, batch_size))
        assert return_scores
        return [[sum(self._c(a, b) - self._c(b, a) for b in cands) / len(cands) for a in cands] for cands in candidates]

    def compare(self, inputs, candidates_A, candidates_B, instructions=None, batch_size=4, return_logits=False,
                mode="[A,B]+[B,A]", disable_tqdm=False):
        self.calls.append(("compare", list(inputs), list(zip(candidates_A, candidates_B)), return_logits, mode))
        assert return_logits and mode == "[A,B]+[B,A]"
        return [self._c(a, b) - self._c(b, a) for a, b in zip(candidates_A, candidates_B)]


def transitive_logits():
    """The issue's worked example: C_ij = r_i - r_j with r = (1, 0.5, 0, -0.5, -1) (antisymmetric, no position bias)."""
    r = dict(zip(RESPONSES, [1.0, 0.5, 0.0, -0.5, -1.0]))
    return {a: {b: r[a] - r[b] for b in RESPONSES} for a in RESPONSES}


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_sppo_mode_worked_example_0809_0191():
    """SPPO's targets on the issue's 5-response example: p_w = 0.809289, p_l = 0.190711.

    llm-blender's aggregate: s_i = mean_j (C_ij - C_ji) = mean_j 2 (r_i - r_j) = 2 r_i (mean r = 0), so
    s = (2, 1, 0, -1, -2). P_0j = sigma(2 - s_j) = sigma(0, 1, 2, 3, 4) = (0.5, 0.731059, 0.880797,
    0.952574, 0.982014): p_0 = 4.046444 / 5 = 0.809289; by symmetry p_4 = 1 - p_0 = 0.190711.
    chosen_probs = P_04 = sigma(4) = 0.982014.
    """
    stub = StubBlender(transitive_logits())
    j = PairRMJudge(blender=stub).preference_matrix("q", RESPONSES)
    p = win_probabilities(j.matrix)
    assert p[0].item() == pytest.approx(0.809289, abs=1e-6) and p[4].item() == pytest.approx(0.190711, abs=1e-6)
    pair = sppo_pair(j.matrix)
    assert (pair["chosen_index"], pair["rejected_index"]) == (0, 4)
    assert pair["chosen_prob"] == pytest.approx(0.809289, abs=1e-6)
    assert pair["rejected_prob"] == pytest.approx(0.190711, abs=1e-6)
    assert pair["pair_prob"] == pytest.approx(0.982014, abs=1e-6)
    # One rank call per prompt, with scores, batch size 1, as SPPO's scripts/rank.py.
    assert stub.calls == [("rank", ["q"], [RESPONSES], True, 1)]


def test_symmetrised_one_direction_form_gives_the_issues_0710_0290():
    """The form the issue measured: P_ij = (sigma(C_ij) + 1 - sigma(C_ji)) / 2 on one-direction logits.

    With C antisymmetric that is sigma(r_i - r_j): P_0j = sigma(0, .5, 1, 1.5, 2) = (0.5, 0.622459,
    0.731059, 0.817574, 0.880797), p_0 = 3.551889 / 5 = 0.710378 and p_4 = 0.289622, 30% closer to 1/2
    (0.210 vs 0.309 above it).
    """
    C = transitive_logits()
    P = PairwiseJudge(lambda q, a, b: sigmoid(C[a][b])).preference_matrix("q", RESPONSES).matrix
    p = win_probabilities(P)
    assert p[0].item() == pytest.approx(0.710378, abs=1e-6) and p[4].item() == pytest.approx(0.289622, abs=1e-6)


def test_pairwise_mode_is_compares_logit_and_agrees_on_a_transitive_pairrm():
    """pairrm_mode pairwise: P_ij = sigma(C_ij - C_ji) = sigma(2 (r_i - r_j)) here, the same P as SPPO's.

    (Blender.compare's default logit is C_ab - C_ba, the sum of the two orders, not their mean, so
    podium's former PairRM judge gave 0.809 / 0.191 on this example too.) 10 unordered pairs, one call.
    """
    stub = StubBlender(transitive_logits())
    j = PairRMJudge(blender=stub, mode="pairwise").preference_matrix("q", RESPONSES)
    p = win_probabilities(j.matrix)
    assert p[0].item() == pytest.approx(0.809289, abs=1e-6) and p[4].item() == pytest.approx(0.190711, abs=1e-6)
    ((call, _, pairs, logits, mode),) = stub.calls
    assert call == "compare" and len(pairs) == 10 and logits and mode == "[A,B]+[B,A]"


def test_sppo_and_pairwise_differ_on_an_intransitive_pairrm_with_position_bias():
    """K = 3, D = C - C^T with D_01 = 2, D_02 = 0, D_12 = 2 (not r_i - r_j), C_ij = D_ij / 2 + 0.3 (a bias
    to whichever is shown first, which both forms cancel).

    SPPO: s = mean_j D_ij = (2/3, 0, -2/3); P_01 = P_12 = sigma(2/3) = 0.660756, P_02 = sigma(4/3) = 0.791391;
    p_0 = (0.5 + 0.660756 + 0.791391) / 3 = 0.650716, p_2 = 0.349284, chosen_probs = P_02 = 0.791391.
    pairwise: P_01 = P_12 = sigma(2) = 0.880797, P_02 = sigma(0) = 0.5;
    p_0 = (0.5 + 0.880797 + 0.5) / 3 = 0.626932, p_2 = 0.373068, pair_prob = 0.5.
    """
    names = ["a", "b", "c"]
    D = [[0, 2, 0], [-2, 0, 2], [0, -2, 0]]
    C = {names[i]: {names[j]: D[i][j] / 2 + 0.3 for j in range(3)} for i in range(3)}
    sppo = sppo_pair(PairRMJudge(blender=StubBlender(C)).preference_matrix("q", names).matrix)
    pw = sppo_pair(PairRMJudge(blender=StubBlender(C), mode="pairwise").preference_matrix("q", names).matrix)
    assert (sppo["chosen_index"], sppo["rejected_index"]) == (0, 2) == (pw["chosen_index"], pw["rejected_index"])
    assert sppo["chosen_prob"] == pytest.approx(0.650716, abs=1e-6)
    assert sppo["rejected_prob"] == pytest.approx(0.349284, abs=1e-6)
    assert sppo["pair_prob"] == pytest.approx(0.791391, abs=1e-6)
    assert pw["chosen_prob"] == pytest.approx(0.626932, abs=1e-6)
    assert pw["rejected_prob"] == pytest.approx(0.373068, abs=1e-6)
    assert pw["pair_prob"] == pytest.approx(0.5, abs=1e-6)


def test_pairrm_rejects_empty_responses_and_bad_modes():
    judge = PairRMJudge(blender=StubBlender(transitive_logits()))
    j = judge.preference_matrix("q", ["r0", " ", "r2"])
    assert not j.valid and j.invalid == [1] and judge.blender.calls == []
    with pytest.raises(PodiumError, match="mode"):
        PairRMJudge(blender=judge.blender, mode="bubble")


def test_prompt_text_is_the_last_message_or_the_policys_chat_template(monkeypatch, tmp_path):
    """By default PairRM reads the last message; with prompt_template, the prompt rendered up to the assistant's
    turn with that model's chat template, as SPPO's rank.py (`apply_template`) passes it."""
    stub = StubBlender(transitive_logits())
    PairRMJudge(blender=stub).preference_matrix([{"role": "user", "content": "hi"}], RESPONSES[:2])
    assert stub.calls[-1][1] == ["hi"]

    build_tokenizer().save_pretrained(tmp_path / "policy")
    fake = types.SimpleNamespace(Blender=lambda: types.SimpleNamespace(loadranker=lambda *a, **k: None,
                                                                          rank=stub.rank, compare=stub.compare))
    monkeypatch.setattr(pairwise_module, "import_llm_blender", lambda: fake)
    judge = build_judge(JudgeSpec(kind="pairrm", prompt_template=str(tmp_path / "policy")))
    judge.judge([{"role": "user", "content": "hi"}], RESPONSES[:2])
    assert stub.calls[-1][1] == ["<|user|>hi<|end|><|assistant|>"]
    assert judge.inner.mode == "sppo"


def test_judge_spec_settings_belong_to_their_kind():
    with pytest.raises(ValueError, match="pairrm_mode is a setting of judge kind 'pairrm'"):
        JudgeSpec(kind="gpm", model="m", pairrm_mode="sppo")
    with pytest.raises(ValueError, match="gpm_probability"):
        JudgeSpec(kind="pairrm", gpm_probability="loss")


def test_llm_blender_import_errors_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llm_blender", None)
    with pytest.raises(PodiumError, match=r"needs llm-blender: pip install 'podium\[pairrm\]'"):
        PairRMJudge()
    # llm-blender 0.0.2 under transformers 5: installed, but its import fails.
    monkeypatch.delitem(sys.modules, "llm_blender")
    pkg = tmp_path / "llm_blender"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'TRANSFORMERS_CACHE' from 'transformers.utils.hub'\")\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PodiumError, match="installed but cannot be imported.*TRANSFORMERS_CACHE.*transformers < 5"):
        PairRMJudge()


def test_sppo_mode_matrix_is_a_tournament_from_scores():
    stub = StubBlender(transitive_logits())
    P = PairRMJudge(blender=stub).preference_matrix("q", RESPONSES).matrix
    assert torch.equal(P.diagonal(), torch.full((5,), 0.5))
    torch.testing.assert_close(P + P.T, torch.ones(5, 5))


def llm_blender_utils():
    """llm-blender's own `gpt_eval/utils.py` (aggregation helpers), loaded without importing the package, whose
    `__init__` needs transformers < 5; skips when llm-blender is not installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_blender")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-blender not installed")
    path = Path(spec.submodule_search_locations[0]) / "gpt_eval" / "utils.py"
    module_spec = importlib.util.spec_from_file_location("llm_blender_gpt_eval_utils", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_stub_answers_as_llm_blenders_own_aggregation():
    """The stub's rank and compare against llm-blender's `get_scores_from_cmps` on the same logits."""
    import numpy as np

    utils = llm_blender_utils()
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(5, 5, generator=g, dtype=torch.float64).fill_diagonal_(0)
    C = {a: {b: float(raw[i, j]) for j, b in enumerate(RESPONSES)} for i, a in enumerate(RESPONSES)}
    stub = StubBlender(C)
    expected = utils.get_scores_from_cmps(raw.numpy()[None])[0]
    np.testing.assert_allclose(stub.rank(["q"], [RESPONSES], return_scores=True)[0], expected, atol=1e-6)
    # compare's default mode: rank on [a, b], then s_a - s_b.
    two = raw[:2, :2].numpy()[None]
    s = utils.get_scores_from_cmps(two)[0]
    assert stub.compare(["q"], ["r0"], ["r1"], return_logits=True)[0] == pytest.approx(s[0] - s[1], abs=1e-6)


@pytest.mark.parametrize("files,match", [
    ({}, "not a PairRM checkpoint: no config.json"),
    ({"config.json": "{oops"}, "config.json: invalid JSON"),
    ({"config.json": '{"model_type": "deberta"}'}, "missing field 'ranker_type'"),
    ({"config.json": '{"ranker_type": "pairranker", "model_name": "microsoft/deberta-v3-large"}'}, "no model.safetensors$"),
    ({"config.json": '{"ranker_type": "pairranker", "model_name": "m"}', "pytorch_model.bin": "x"},
     "only pytorch_model.bin, a pickle"),
])
def test_unreadable_pairrm_folders_name_folder_and_field(tmp_path, monkeypatch, files, match):
    folder = tmp_path / "pairrm"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    monkeypatch.setattr(pairwise_module, "import_llm_blender", lambda: pytest.fail("llm-blender must not be reached"))
    with pytest.raises(PodiumError, match=match) as e:
        PairRMJudge(str(folder))
    assert str(folder) in str(e.value)
