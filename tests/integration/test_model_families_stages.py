"""Every model-running stage runs on each seed family from a saved folder, given only the model path.

sft, train (every objective, reward and gpm included), generate, sgd, selfplay and eval on tiny
random Llama-3, Qwen2, Mistral, Mixtral and Gemma-2 folders (tests/parity/families.py): no
`attn_implementation`, layout or router setting; the data and the tiny step counts are the only
other keys. The Mixtral runs log the router loss (`aux_loss`). Numbers are checked against TRL and
transformers in tests/parity/test_model_families.py; this checks that nothing refuses or crashes.
"""

from __future__ import annotations

import json
import math

import pytest
from tests.parity.families import FAMILIES, PAIRS, build_family

from podium.models.io import save_model
from podium.stages import run_stage

pytestmark = pytest.mark.integration

POLICY_OBJECTIVES = ("dpo", "ipo", "hinge", "rpo", "dpop", "sppo", "sppo_single", "sppo_hard", "gpo")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def metrics_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_model_stage_runs(family, tmp_path):
    model, tok = build_family(family)
    folder = str(save_model(model, tok, tmp_path / "model"))
    scored = [{**p, "chosen_prob": 0.7, "rejected_prob": 0.3, "pair_prob": 0.6, "chosen_score": 0.4,
               "rejected_score": -0.2} for p in PAIRS[:4]]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", scored)
    sft_data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS[:4]])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": [{"role": "user", "content": p["prompt"]}]}
                                                       for p in PAIRS[:3]])
    tiny = {"max_steps": 1, "batch_size": 2}
    moe = family == "mixtral"

    run_stage("sft", {"model": folder, "data": sft_data, **tiny}, tmp_path / "sft")
    assert ("aux_loss" in metrics_rows(tmp_path / "sft")[0]) == moe
    for objective in (*POLICY_OBJECTIVES, "reward", "gpm"):
        out = tmp_path / f"train-{objective}"
        run_stage("train", {"model": folder, "data": pairs, "objective": objective,
                            "reference_cache_dir": str(tmp_path / "cache"), **tiny}, out)
        (row,) = metrics_rows(out)
        assert math.isfinite(row["loss"]), objective
        if objective in POLICY_OBJECTIVES:
            assert ("aux_loss" in row) == moe, objective
    gen = run_stage("generate", {"model": folder, "prompts": prompts, "n": 2, "max_new_tokens": 8},
                    tmp_path / "generate")
    assert gen["samples"] == 6
    sgd = run_stage("sgd", {"model": folder, "task": "arithmetic", "count": 3, "num_samples": 2, "max_new_tokens": 8},
                    tmp_path / "sgd")
    assert sgd["prompts"] == 3
    run_stage("selfplay", {"model": folder, "task": "arithmetic", "count": 4, "iterations": 1, "num_samples": 2,
                           "max_new_tokens": 6, "eval_count": 2,
                           "judge": {"kind": "gpm", "model": str(tmp_path / "train-gpm")},
                           "train": {"batch_size": 2, "max_steps": 1}}, tmp_path / "selfplay")
    assert (tmp_path / "selfplay" / "model.safetensors").exists()
    ev = run_stage("eval", {"model": folder, "task": "arithmetic", "count": 4, "max_new_tokens": 8}, tmp_path / "eval")
    assert 0.0 <= ev["accuracy"] <= 1.0
