"""recipes/toy/sppo-gemma-2-9b.yaml with `judge: {kind: pairrm, model: DIR}` on a local PairRM folder, end to end.

The folder is the tiny random-init checkpoint in llm-blender/PairRM's layout (tests/pairrm_fixtures.py); prompts
reach PairRM rendered with the policy's chat template (`prompt_template: "@sft"`), as SPPO's rank.py renders them.
The pairs written by each iteration are recomputed here from that iteration's samples with the judge's logits and
SPPO's compute_prob.py formulas: chosen = argmax s, rejected = argmin s, p = row sums of P_ij = sigma(s_i - s_j) / K.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.pairrm_fixtures import build_tiny_pairrm

from podium.judging.build import template_prompt
from podium.judging.pairrm import PairRMJudge, aggregate_scores
from podium.models.io import load_tokenizer
from podium.models.pairrm import load_pairrm
from podium.pipeline import run_recipe

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


def test_toy_sppo_recipe_judged_by_a_local_pairrm_folder(tmp_path):
    pairrm = build_tiny_pairrm(tmp_path / "pairrm")["llm-blender"]
    run = tmp_path / "run"
    overrides = ["sft.max_steps=20", "sft.stop_at=null", "eval_sft.count=20", "sppo.count=24", "sppo.eval_count=8",
                 "sppo.train.epochs=1", "sppo.judge.kind=pairrm", f"sppo.judge.model={pairrm}",
                 "sppo.judge.prompt_template=@sft"]
    report = run_recipe(str(ROOT / "recipes" / "toy" / "sppo-gemma-2-9b.yaml"), overrides, output=str(run),
                        show_progress=False, until="sppo")
    assert [s["status"] for s in report["stages"]] == ["ran"] * 4
    metrics = json.loads((run / "sppo" / "metrics.json").read_text())
    assert all(metrics[f"iter{t}/pairs"] >= 1 for t in (1, 2, 3))

    judge = PairRMJudge(load_pairrm(pairrm, device="cpu"))
    tok = load_tokenizer(run / "sft")
    samples = [json.loads(line) for line in (run / "sppo" / "iter1" / "generate" / "samples.jsonl").read_text().splitlines()]
    pairs = {json.dumps(p["prompt"]): p for p in map(json.loads, (run / "sppo" / "iter1" / "pairs.jsonl").read_text().splitlines())}
    checked = 0
    for sample in samples:
        responses = sample["responses"]
        if any(not r.strip() for r in responses):
            assert json.dumps(sample["prompt"]) not in pairs  # dropped: a response PairRM would read as empty
            continue
        text = template_prompt(tok, sample["prompt"])
        assert text.startswith("<|user|>") and text.endswith("<|assistant|>")
        C = judge.logit_matrices([(text, responses)])[0]
        s = aggregate_scores(C)
        P = torch.sigmoid(s[:, None] - s[None, :])
        w, l = int(s.argmax()), int(s.argmin())
        pair = pairs[json.dumps(sample["prompt"])]
        assert pair["chosen"][0]["content"] == responses[w] and pair["rejected"][0]["content"] == responses[l]
        assert pair["chosen_prob"] == pytest.approx(P[w].sum().item() / len(responses), abs=1e-5)
        assert pair["rejected_prob"] == pytest.approx(P[l].sum().item() / len(responses), abs=1e-5)
        assert pair["pair_prob"] == pytest.approx(P[w, l].item(), abs=1e-5)
        checked += 1
    assert checked >= 1
