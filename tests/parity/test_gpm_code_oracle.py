"""podium's GPM judge against the GPM code itself: general-preference/general-preference-model's gpm_example_usage.py.

That code is not on PyPI and CI reaches only PyPI, so this test runs where $PODIUM_GPM_CODE names a checkout of
the repository (git clone https://github.com/general-preference/general-preference-model), and is skipped
otherwise; CI runs the independent re-derivation of the same formulas instead (tests/unit/test_gpm_released.py).
The code runs in the llm-blender oracle's venv (transformers 4.57.1, tests/pairrm_oracle.py): `GPMPipeline` loads
the released-layout checkpoint written here (a random-init tiny Llama with value and prompt heads, or Gemma-2
without a prompt head), each response is scored as its model card does (`rm([context], return_prompt=True)`), and
T_ij = `generate_high_dim_result_with_prompt(...)` / tau; the SPPO/GPO scripts' P_ij = sigma(T_ij - T_ji).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tests.pairrm_oracle import run_oracle
from tests.unit.test_gpm_released import PROMPT, RESPONSES, TAU, write_released

from podium.judging.build import JudgeSpec, build_judge

pytestmark = pytest.mark.parity
CODE = os.environ.get("PODIUM_GPM_CODE")


def v4_readable(folder: Path) -> None:
    """The tokenizer_config.json transformers 5 writes names its generic class `TokenizersBackend`, which transformers
    4 calls `PreTrainedTokenizerFast` (and `additional_special_tokens` what 5 calls `extra_special_tokens`); its
    inputs are those of the Llama and Gemma tokenizers (no token_type_ids, which CustomRewardModel does not take)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_input_names"] = ["input_ids", "attention_mask"]
    if "extra_special_tokens" in config:
        config["additional_special_tokens"] = config.pop("extra_special_tokens")
    path.write_text(json.dumps(config))


@pytest.mark.skipif(not (CODE and (Path(CODE) / "gpm_example_usage.py").is_file()),
                    reason="set PODIUM_GPM_CODE to a checkout of general-preference/general-preference-model")
@pytest.mark.parametrize("family,dim,prompt_head", [("llama", 8, True), ("gemma2", 6, False)])
def test_gpm_judge_equals_the_gpm_codes_pipeline(tmp_path, family, dim, prompt_head):
    folder = tmp_path / "GPM-tiny"
    write_released(folder, family, dim, prompt_head)
    v4_readable(folder)
    prompts = [PROMPT, "Name a colour."]
    responses = [RESPONSES, ["red", "Blue!", "a colour"]]
    (oracle,) = run_oracle([{"op": "gpm", "code": CODE, "model": str(folder), "tau": TAU, "prompts": prompts,
                             "responses": responses}])
    judge = build_judge(JudgeSpec(kind="gpm", model=str(folder)))
    for prompt, resp, T in zip(prompts, responses, oracle["tables"]):
        T = torch.tensor(T, dtype=torch.float64)
        L = T - T.T
        j = judge.judge(prompt, resp)
        torch.testing.assert_close(j.scores.double(), L, atol=1e-5, rtol=0)
        torch.testing.assert_close(j.matrix.double(), torch.sigmoid(L).fill_diagonal_(0.5), atol=1e-5, rtol=0)
        assert L.abs().max() > 0.2  # not vacuous
