"""The memory estimate (podium.training.memory) against the real things: parameter counts of the models
transformers builds from the full-scale recipes' config.json shapes (on the meta device, nothing downloaded),
DeepSpeed's published ZeRO-3 model-state formula on those counts, and the dry run's per-stage lines."""

from __future__ import annotations

import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from podium.planning import make_plan
from podium.training.memory import KNOWN_CONFIGS, ModelShape, TrainingSetup, estimate
from podium.training.memory_plan import plan_memory_lines

RECIPE_MODELS = ["abacusai/Smaug-72B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1", "upstage/SOLAR-10.7B-Instruct-v1.0",
                 "google/gemma-2-9b-it", "meta-llama/Meta-Llama-3-8B-Instruct"]
# Parameter counts the model cards publish (billions), as a sanity bound on the shapes written here.
CARD_BILLIONS = {"abacusai/Smaug-72B-v0.1": 72.3, "mistralai/Mixtral-8x7B-Instruct-v0.1": 46.7,
                 "upstage/SOLAR-10.7B-Instruct-v1.0": 10.7, "google/gemma-2-9b-it": 9.24,
                 "meta-llama/Meta-Llama-3-8B-Instruct": 8.03}


# The shape fields of each model's published config.json, as the Hub serves them (read 2026-12-07 through public
# copies of the files; Smaug-72B-v0.1's from a quantised copy that keeps its config, `_name_or_path`
# MoMo-72B-lora-1.8.7-DPO, the same numbers as moreh/MoMo-72B-LoRA-V1.4's). Gemma-2's file leaves
# tie_word_embeddings out: Gemma2Config's default (true) applies.
PUBLISHED = {
    # huggingface.co/blockblockblock/Smaug-72B-v0.1-bpw4.4/blob/main/config.json
    "abacusai/Smaug-72B-v0.1": {"model_type": "llama", "attention_bias": True, "hidden_size": 8192,
                                "intermediate_size": 24576, "num_attention_heads": 64, "num_hidden_layers": 80,
                                "num_key_value_heads": 64, "tie_word_embeddings": False, "vocab_size": 152064},
    # huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/eba92302a2861cdc0098cc54bc9f17cb2c47eb61/config.json
    "mistralai/Mixtral-8x7B-Instruct-v0.1": {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
                                             "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
                                             "num_key_value_heads": 8, "num_local_experts": 8,
                                             "tie_word_embeddings": False, "vocab_size": 32000},
    # huggingface.co/upstage/SOLAR-10.7B-Instruct-v1.0/blame/2ddf358d72c71dd963261ba27ce3c9f4018ecc6f/config.json
    "upstage/SOLAR-10.7B-Instruct-v1.0": {"model_type": "llama", "attention_bias": False, "hidden_size": 4096,
                                          "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 48,
                                          "num_key_value_heads": 8, "tie_word_embeddings": False, "vocab_size": 32000},
    # huggingface.co/hfhugs/gemma-2-9b-it/blob/main/config.json (the file google/gemma-2-9b-it ships)
    "google/gemma-2-9b-it": {"model_type": "gemma2", "head_dim": 256, "hidden_size": 3584, "intermediate_size": 14336,
                             "num_attention_heads": 16, "num_hidden_layers": 42, "num_key_value_heads": 8,
                             "vocab_size": 256000},
    # a copy of meta-llama/Meta-Llama-3-8B-Instruct's config.json (e.g. huggingface.co/eastwind/llama-3-8b-instruct-hf-pt)
    "meta-llama/Meta-Llama-3-8B-Instruct": {"model_type": "llama", "attention_bias": False, "hidden_size": 4096,
                                            "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
                                            "num_key_value_heads": 8, "tie_word_embeddings": False, "vocab_size": 128256},
}


@pytest.mark.parametrize("name", RECIPE_MODELS)
def test_shapes_written_here_are_the_published_configs(name):
    published = AutoConfig.for_model(**PUBLISHED[name])  # the config class's defaults for what the file leaves out
    assert ModelShape.from_config({"model_type": PUBLISHED[name]["model_type"], **published.to_dict()}) == \
        ModelShape.from_config(KNOWN_CONFIGS[name])


def deepspeed_counts(name: str) -> tuple[int, int]:
    """DeepSpeed's `model_to_params` on the model transformers builds from the config: total parameters (shared
    ones once) and the largest module's own parameters."""
    cfg = dict(KNOWN_CONFIGS[name])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum({id(p): p.numel() for p in model.parameters()}.values())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return total, largest


def deepspeed_zero3_gpu_bytes(total: int, largest: int, gpus: int, cpu_offload: bool) -> int:
    """deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs, one node, parameters on the GPU
    (offload_param none), as DeepSpeed's docs publish it: 4 * largest_layer_params + 18 * total / gpus bytes,
    or 4 * largest_layer_params + 2 * total / gpus with the optimizer offloaded (cpu_offload)."""
    largest_layer_memory = 4 * largest
    if cpu_offload:
        return largest_layer_memory + int(2 * total / gpus)
    return largest_layer_memory + int(18 * total / gpus)


@pytest.mark.parametrize("name", RECIPE_MODELS)
def test_shapes_count_what_transformers_builds_and_match_deepspeeds_zero3_formula(name):
    shape = ModelShape.from_config(KNOWN_CONFIGS[name])
    total, largest = deepspeed_counts(name)
    assert shape.parameters == total
    assert shape.largest_module == largest
    assert shape.parameters / 1e9 == pytest.approx(CARD_BILLIONS[name], rel=0.01)
    for offload in (False, True):
        e = estimate(shape, TrainingSetup(processes=8, sharding="zero3", offload_optimizer=offload))
        assert e.parameters + e.gradients + e.optimizer == pytest.approx(
            deepspeed_zero3_gpu_bytes(total, largest, 8, offload), rel=1e-6), offload


def test_sharding_divides_model_states_and_not_activations():
    shape = ModelShape.from_config(KNOWN_CONFIGS["meta-llama/Meta-Llama-3-8B-Instruct"])
    one = estimate(shape, TrainingSetup(processes=1, batch_size=1, max_length=1024))
    eight = estimate(shape, TrainingSetup(processes=8, sharding="fsdp2", batch_size=1, max_length=1024))
    assert eight.optimizer * 8 == pytest.approx(one.optimizer, rel=1e-6)
    assert eight.activations == one.activations and eight.logits == one.logits
    lora = estimate(shape, TrainingSetup(processes=8, sharding="fsdp2", lora_r=16))
    assert lora.optimizer < eight.optimizer / 100  # only the adapters have optimizer state
    checkpointed = estimate(shape, TrainingSetup(processes=8, sharding="fsdp2", max_length=1024, activation_checkpointing=True))
    assert checkpointed.activations < eight.activations / 10


def test_dry_run_prints_each_training_stage_and_whether_it_fits(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: t
        stages:
          - {name: base, kind: tiny_model, hidden_size: 16, intermediate_size: 32, num_layers: 2, num_heads: 2}
          - name: sft
            kind: sft
            model: "@base"
            data: [{task: arithmetic, count: 8}]
            launch: {num_processes: 2, fsdp: true, gpu_memory_gb: 0.0010486}
          - {name: sppo, kind: train, model: meta-llama/Meta-Llama-3-8B-Instruct, data: p.jsonl, batch_size: 1,
             gradient_checkpointing: true, launch: {num_processes: 8, fsdp: {cpu_offload: true}, gpu_memory_gb: 80}}
          - {name: dpo, kind: train, model: unknown/model, data: p.jsonl}
        """))
    plan = make_plan(str(recipe), [], output=str(tmp_path / "run"))
    lines = "\n".join(plan_memory_lines(plan.stages))
    assert "[sft] memory per process, 2 processes, FSDP2 (podium): peak ~" in lines
    assert "[sft]   does NOT fit 1.0 MiB per device" in lines  # 1 MB GPUs
    assert "[sppo] memory per process, 8 processes, FSDP2 (podium), CPU offload" in lines and "host memory" in lines
    assert "[sppo]   fits 74.5 GiB per device" in lines
    assert "[dpo] memory per process: unknown (no config.json for unknown/model)" in lines
