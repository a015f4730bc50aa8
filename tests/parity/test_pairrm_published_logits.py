"""The real PairRM checkpoints against the logits their conversion notebook published.

LLM-Blender's pairrm_to_hf.ipynb (and the llm-blender/PairRM-hf model card) runs two pairs through the real model:
("hello!", "hi!", "f**k off!") and ("I love you!", "I hate you!", "I love you, too!") give the one-direction logits
[1.9003021717071533, -1.2547134160995483] (`DebertaV2PairRM` in float32; llm-blender's `compare(mode="[A,B]")` on
llm-blender/PairRM printed [1.9, -1.255]). These need the real weights (llm-blender/PairRM-hf; llm-blender/PairRM
with microsoft/deberta-v3-large's config and tokenizer): the test runs when they are in the Hugging Face cache or the
Hub is reachable, and skips otherwise (the test suite runs with HF_HUB_OFFLINE=1, so only a warm cache counts there).
"""

from __future__ import annotations

import pytest

from podium.errors import PodiumError
from podium.judging.pairrm import PairRMJudge
from podium.models.pairrm import load_pairrm

pytestmark = pytest.mark.parity
PAIRS = [("hello!", "hi!", "f**k off!"), ("I love you!", "I hate you!", "I love you, too!")]
PUBLISHED = [1.9003021717071533, -1.2547134160995483]


@pytest.mark.parametrize("checkpoint", ["llm-blender/PairRM-hf", "llm-blender/PairRM"])
def test_real_checkpoint_gives_the_published_logits(checkpoint):
    try:
        pairrm = load_pairrm(checkpoint, device="cpu")
    except PodiumError as e:
        pytest.skip(f"{checkpoint} is not reachable here ({e})")
    judge = PairRMJudge(pairrm)
    logits = [judge.logit_matrices([(x, [a, b])])[0][0, 1].item() for x, a, b in PAIRS]
    assert logits == pytest.approx(PUBLISHED, abs=2e-3)  # published from a CUDA run; this one is float32 on CPU
