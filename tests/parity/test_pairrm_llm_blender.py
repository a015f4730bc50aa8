"""podium's native PairRM against llm-blender 0.0.2 itself (tests/pairrm_oracle.py: its own venv, transformers 4.57.1).

Both read the same tiny random-init checkpoints (tests/pairrm_fixtures.py): llm-blender/PairRM's layout, written
here, and llm-blender/PairRM-hf's layout written by the oracle as the conversion notebook does it (so its
tokenizer.json is transformers 4's own). Expected values come from llm-blender's code: the collator's token ids,
`_full_predict`'s logit matrix C, `Blender.rank(..., return_scores=True, batch_size=1)`'s scores (SPPO's rank.py
call), `Blender.compare`'s logits, and `DebertaV2PairRM` run on the model card's `tokenize_pair`. SPPO's targets
are computed from the oracle's scores with scripts/compute_prob.py's formulas (numpy, here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.pairrm_fixtures import WORDS, build_tiny_pairrm
from tests.pairrm_oracle import run_oracle

from podium.judging import win_probabilities
from podium.judging.build import JudgeSpec, build_judge
from podium.judging.pairrm import PairRMJudge
from podium.models.pairrm import load_pairrm
from podium.selfplay.targets import sppo_pair

pytestmark = pytest.mark.parity

LONG_SOURCE = " ".join(WORDS[i % len(WORDS)] for i in range(1500))  # > 1224 tokens
LONG_ANSWER = " ".join(WORDS[(7 * i) % len(WORDS)] for i in range(1200))  # > (2048 - a short source) / 2 tokens
CASES = [  # (prompt, candidates): K = 2..6, "[SEP]" in texts, whitespace and unicode, ties
    ("What is 2+2?", ["4", "The answer is 4."]),
    ("  Name a colour.\n", [" red", "Blue!", "green  and   yellow", "\tnone"]),
    ("Split [SEP] this [SEP]", ["a [SEP] b", "[SEP]", "plain answer", "has [UNK] and [CLS] inside", "café — naïve"]),
    ("Pick one", ["same", "other", "same", "third", "other", "same"]),
    ("All equal?", ["x", "x", "x"]),
]
# Truncation on a checkpoint whose ranker config says source_maxlength 40, candidate_maxlength 16 (the collator
# reads both from it): sources cut at 40 tokens, candidates at 16 + (40 - len(source)) // 2.
SHORT_CONFIG = {"source_maxlength": 40, "candidate_maxlength": 16}
TRUNCATED = [
    (" ".join(WORDS[:60]), [" ".join(WORDS[5:50]), "brief", " ".join(WORDS[20:80])]),
    ("Short prompt", [" ".join(WORDS[:70]), " ".join(WORDS[30:90]), "tiny"]),
    ("A [SEP] prompt " + " ".join(WORDS[:20]), ["[SEP] " + " ".join(WORDS[:30]), "x [SEP] y"]),
]
# PairRM's own cuts, 1224 / 412 / 412 tokens (2048 in all): compared as token ids (the collator's), since the logits
# of the same rule are compared on the short-config checkpoint at a fraction of the cost.
REAL_LONG = (LONG_SOURCE, [LONG_ANSWER, LONG_ANSWER.upper()])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairrm")
    dirs = build_tiny_pairrm(root, {"short": SHORT_CONFIG})
    dirs["notebook-hf"] = root / "PairRM-hf-notebook"
    return dirs


def full_job(folder, cases, rank=True):
    return [{"op": "full", "pairrm": str(folder), "inputs": [p], "candidates": [c], "rank": rank} for p, c in cases]


@pytest.fixture(scope="module")
def oracle(checkpoints):
    blender_dir = checkpoints["llm-blender"]
    plain = [(p, a, b) for p, cs in CASES[:4] for a in cs for b in cs if a != b and "[SEP]" not in p + a + b]
    jobs = [
        {"op": "write_hf", "pairrm": str(blender_dir), "out": str(checkpoints["notebook-hf"])},
        *full_job(blender_dir, CASES),
        *full_job(checkpoints["short"], TRUNCATED),
        {"op": "collate", "pairrm": str(blender_dir), "inputs": [REAL_LONG[0]], "candidates": [REAL_LONG[1]]},
        {"op": "compare", "pairrm": str(blender_dir), "mode": "[A,B]", "inputs": ["hello!", "I love you!"],
         "a": ["hi!", "I hate you!"], "b": ["f**k off!", "I love you, too!"]},
        {"op": "compare", "pairrm": str(blender_dir), "mode": "[A,B]+[B,A]", "inputs": [CASES[2][0]] * 2,
         "a": CASES[2][1][:2], "b": CASES[2][1][2:4]},
        {"op": "hf_logits", "hf": str(checkpoints["notebook-hf"]), "inputs": [t[0] for t in plain],
         "a": [t[1] for t in plain], "b": [t[2] for t in plain]},
    ]
    out = iter(run_oracle(jobs)[1:])

    def take(n):
        return [{**job["prompts"][0], "rank_scores": job.get("rank_scores", [None])[0], "manual_sep": job["manual_sep"]}
                for job in (next(out) for _ in range(n))]

    return {"full": take(len(CASES)), "truncated": take(len(TRUNCATED)), "real_long": next(out)["prompts"][0],
            "compare": next(out),
            "compare_both": next(out), "hf": next(out), "plain": plain}


@pytest.fixture(scope="module")
def judges(checkpoints, oracle):
    return {layout: PairRMJudge(load_pairrm(checkpoints[layout]), batch_size=5, max_batch_tokens=4096)
            for layout in ("llm-blender", "hf", "notebook-hf", "short")}


def test_token_ids_are_the_collators(judges, oracle):
    """Sources and candidates as llm-blender's CrossCompareCollator tokenises and cuts them, "[SEP]" replaced."""
    assert oracle["full"][0]["manual_sep"] is False  # DeBERTa's "[SEP]" encodes to 3 ids: the collator's plain path
    for layout, cases, refs in [("llm-blender", CASES, oracle["full"]), ("short", TRUNCATED, oracle["truncated"]),
                                ("llm-blender", [REAL_LONG], [oracle["real_long"]])]:
        enc = judges[layout].encoder
        for (prompt, cands), ref in zip(cases, refs):
            source, candidates = enc.segments(prompt, cands)
            assert source == ref["source"]
            assert candidates == ref["candidates"]
    long_source, long_cands = judges["llm-blender"].encoder.segments(*REAL_LONG)
    assert len(long_source) == 1224 and [len(c) for c in long_cands] == [412, 412]
    source, cands = judges["short"].encoder.segments(*TRUNCATED[1])
    assert [len(c) for c in cands[:2]] == [16 + (40 - len(source)) // 2] * 2


@pytest.mark.parametrize("layout,cases,key", [("llm-blender", CASES, "full"), ("hf", CASES, "full"),
                                              ("notebook-hf", CASES, "full"), ("short", TRUNCATED, "truncated")],
                         ids=["llm-blender", "hf", "notebook-hf", "truncated"])
def test_logits_and_scores_equal_llm_blenders_rank(judges, oracle, layout, cases, key):
    """C equals `_full_predict`'s and s equals `Blender.rank(return_scores=True, batch_size=1)`'s, to 1e-5, the cases of
    a layout judged at once (podium batches the pairs of all prompts by length)."""
    refs = oracle[key] if isinstance(oracle[key], list) else [oracle[key]]
    judge = judges[layout]
    for (prompt, _), ref, C, j in zip(cases, refs, judge.logit_matrices(cases), judge.judge_many(cases)):
        np.testing.assert_allclose(C.numpy(), np.array(ref["C"]), atol=1e-5, rtol=0, err_msg=prompt[:40])
        np.testing.assert_allclose(j.response_scores.numpy(), np.array(ref["scores"]), atol=1e-5, rtol=0)
        if ref["rank_scores"] is not None:  # the public rank() equals its own steps
            np.testing.assert_allclose(np.array(ref["rank_scores"]), np.array(ref["scores"]), atol=1e-6, rtol=0)
    assert max(np.ptp(np.array(r["scores"])) for r in refs) > 0.3  # the scores tell candidates apart: not vacuous


def test_sppo_targets_equal_compute_prob_on_the_oracles_scores(judges, oracle):
    """P_ij = 1 / (1 + exp(s_j - s_i)), p = row sums / K, chosen = argmax s, rejected = argmin s, chosen_probs = P[w][l]."""
    judged = judges["llm-blender"].judge_many(CASES)
    for (_, cands), ref, j in zip(CASES, oracle["full"], judged):
        s = np.array(ref["scores"])
        K = len(cands)
        P = np.array([[1 / (1 + np.exp(s[b] - s[a])) for b in range(K)] for a in range(K)])
        np.testing.assert_allclose(j.matrix.numpy(), P, atol=1e-5, rtol=0)
        np.testing.assert_allclose(win_probabilities(j.matrix).numpy(), P.sum(axis=1) / K, atol=1e-5, rtol=0)
        pair = sppo_pair(j.matrix, j.scores)
        if np.ptp(s) == 0:  # all K tie: SPPO would train on response 0 against itself; podium drops the prompt
            assert pair is None and len(set(cands)) == 1
            continue
        w, l = int(s.argmax()), int(s.argmin())  # numpy: the first of tied maxima, as compute_prob.py
        assert (pair["chosen_index"], pair["rejected_index"]) == (w, l)
        assert pair["chosen_prob"] == pytest.approx(P.sum(axis=1)[w] / K, abs=1e-5)
        assert pair["rejected_prob"] == pytest.approx(P.sum(axis=1)[l] / K, abs=1e-5)
        assert pair["pair_prob"] == pytest.approx(P[w][l], abs=1e-5)


def test_identical_candidates_tie_as_in_llm_blender(oracle, judges):
    """Repeated texts get equal scores (llm-blender runs every pass; podium shares them) and the first one is chosen."""
    s = np.array(oracle["full"][3]["scores"])
    cands = CASES[3][1]
    assert s[0] == pytest.approx(s[2], abs=1e-6) and s[1] == pytest.approx(s[4], abs=1e-6)
    j = judges["llm-blender"].preference_matrix(*CASES[3])
    assert j.response_scores[0] == j.response_scores[2] == j.response_scores[5]
    assert cands[0] == cands[2] == cands[5]


def test_compare_logits_both_modes(judges, oracle):
    """`Blender.compare(mode="[A,B]")` is C_ab (the conversion notebook's published call), "[A,B]+[B,A]" is C_ab - C_ba,
    the pairwise mode's logit."""
    judge = judges["llm-blender"]
    pairs = [("hello!", "hi!", "f**k off!"), ("I love you!", "I hate you!", "I love you, too!")]
    for (x, a, b), ref in zip(pairs, oracle["compare"]["logits"]):
        C = judge.logit_matrices([(x, [a, b])])[0]
        assert C[0, 1].item() == pytest.approx(ref, abs=1e-5)
    prompt, cands = CASES[2]
    pairwise = PairRMJudge(judge.pairrm, mode="pairwise").preference_matrix(prompt, cands[:4])
    for (a, b), ref in zip([(0, 2), (1, 3)], oracle["compare_both"]["logits"]):
        assert pairwise.scores[a, b].item() == pytest.approx(ref, abs=1e-5)
        assert pairwise.matrix[a, b].item() == pytest.approx(1 / (1 + np.exp(-ref)), abs=1e-5)


def test_hf_layout_equals_the_model_cards_usage(judges, oracle):
    """`DebertaV2PairRM.from_pretrained` on the card's `tokenize_pair` (no "[SEP]" in these texts) gives podium's C_ab."""
    judge = judges["notebook-hf"]
    for (x, a, b), ref in zip(oracle["plain"], oracle["hf"]["logits"]):
        C = judge.logit_matrices([(x, [a, b])])[0]
        assert C[0, 1].item() == pytest.approx(ref, abs=1e-5)


def test_judge_spec_builds_the_native_judge_from_a_folder(checkpoints, oracle):
    judge = build_judge(JudgeSpec(kind="pairrm", model=str(checkpoints["llm-blender"])))
    j = judge.judge(*CASES[1])
    np.testing.assert_allclose(j.response_scores.numpy(), np.array(oracle["full"][1]["scores"]), atol=1e-5)
    assert torch.equal(j.matrix.diagonal(), torch.full((4,), 0.5))
