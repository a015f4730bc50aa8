"""Suite expansion, lm-eval result flattening and the built-in task hook of `podium eval` (no lm-eval run)."""

import pytest

from podium.evaluation.lm_eval_bridge import flatten_results
from podium.evaluation.named_tasks import run_eval
from podium.evaluation.suites import expand_tasks


def test_v1_suite_has_leaderboard_fewshot_counts():
    assert expand_tasks("open-llm-v1") == [("arc_challenge", 25), ("hellaswag", 10), ("mmlu", 5),
                                           ("truthfulqa_mc2", 0), ("winogrande", 5), ("gsm8k", 5)]


def test_v2_suite_uses_task_defaults_and_override_applies_everywhere():
    assert all(shots is None for _, shots in expand_tasks(["open-llm-v2"]))
    assert expand_tasks("open-llm-v1,toy", num_fewshot=2)[-1] == ("toy", 2)
    assert expand_tasks("gsm8k,open-llm-v1") [0] == ("gsm8k", None)  # first mention wins, no duplicate
    assert len(expand_tasks("gsm8k,open-llm-v1")) == 6


def test_flatten_strips_none_filter_and_keeps_named_filters():
    res = {
        "arc_challenge": {"alias": "arc_challenge", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.6},
        "gsm8k": {"exact_match,strict-match": 0.3, "exact_match_stderr,strict-match": "N/A",
                  "exact_match,flexible-extract": 0.35},
        "empty": {"alias": "x"},
    }
    assert flatten_results(res) == {
        "arc_challenge": {"acc": 0.5, "acc_norm": 0.6},
        "gsm8k": {"exact_match,strict-match": 0.3, "exact_match": 0.3, "exact_match,flexible-extract": 0.35},
    }


def test_builtin_tasks_go_to_the_hook_without_lm_eval():
    calls = []

    def toy(model, tokenizer, num_fewshot, limit):
        calls.append((model, num_fewshot, limit))
        return {"accuracy": 0.75}

    out = run_eval("M", "T", ["toy"], num_fewshot=3, limit=10, builtin_tasks={"toy": toy})
    assert out == {"tasks": {"toy": {"accuracy": 0.75}}}
    assert calls == [("M", 3, 10)]


@pytest.mark.integration  # lm-eval indexes its whole task tree (~20 s)
def test_unknown_lm_eval_task_is_a_user_error(tmp_path):
    pytest.importorskip("lm_eval")
    from podium.errors import PodiumError
    from podium.evaluation.lm_eval_bridge import evaluate_lm_eval

    with pytest.raises(PodiumError, match="unknown lm-eval task"):
        evaluate_lm_eval(None, None, ["no_such_task_xyz"], include_path=tmp_path)


def test_auto_backend_is_transformers_without_gpu_or_folder():
    import torch

    from podium.errors import PodiumError
    from podium.evaluation.lm_eval_bridge import resolve_backend

    assert resolve_backend("auto", None) == "hf"
    if not torch.cuda.is_available():
        assert resolve_backend("auto", "some/folder") == "hf"
    assert resolve_backend("vllm", None) == "vllm"
    with pytest.raises(PodiumError):
        resolve_backend("tgi", None)
