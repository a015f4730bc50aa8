#!/usr/bin/env bash
# GPU checks of issue 16 that a CPU machine cannot run (accelerate runs FSDP and DeepSpeed on GPUs only;
# vLLM needs CUDA). Run from the repository root on a machine with at least one CUDA GPU:
#   bash scripts/gpu_check.sh            # ~10 minutes on one GPU once the packages are installed
#   bash scripts/gpu_check.sh speed      # only part 3 (issue 18: DPO/SFT vs TRL, sampling vs vLLM), ~7 minutes
# It prints what ran and what was skipped; results go to gpu_check/ (logs and metrics).
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "no CUDA GPU visible: nothing to check"; exit 1; }
[ -x .venv/bin/python ] || bash scripts/setup.sh dev
PY=.venv/bin/python
PART=${1:-all}
# Optional GPU packages (installed only when missing); each check skips itself when its package is missing.
if [ "$PART" != speed ]; then
  $PY -c "import deepspeed" 2>/dev/null || $PY -m pip install -q deepspeed \
    || echo "deepspeed not installed: the ZeRO-3 check will be skipped"
fi
$PY -c "import vllm" 2>/dev/null || $PY -m pip install -q vllm || echo "vllm not installed: the vLLM checks will be skipped"
mkdir -p gpu_check
export HF_HUB_OFFLINE=1

if [ "$PART" != speed ]; then

# 1. Distributed stages on GPU (DDP, FSDP, ZeRO-3 sharded reference pass and gathered final save, vLLM
#    inside a launch), plus the existing GPU tests (CUDA sampler, vLLM greedy = transformers greedy).
timeout 900 $PY -m pytest -q -rs -m gpu tests/integration/test_cluster_gpu.py tests/unit/test_generation_gpu.py \
  2>&1 | tee gpu_check/pytest.log

# 2. Throughput: the toy two-process recipe's sampling and training, bf16 on one GPU, next to the CPU path.
#    (tokens_per_second of the generate stage and pairs_per_second / tokens_per_second of train stages).
timeout 600 $PY -m podium run recipes/examples/two-processes.yaml -o gpu_check/two-processes \
  --no-progress launch.num_processes=1 launch.mixed_precision=bf16 2>&1 | tail -30 | tee gpu_check/recipe.log
$PY - <<'PY' | tee gpu_check/throughput.txt
import json, pathlib
for stage in ("sft", "sgd", "dpo", "sppo"):
    m = pathlib.Path("gpu_check/two-processes", stage, "metrics.json")
    if m.exists():
        d = json.loads(m.read_text())
        print(stage, {k: round(v, 1) for k, v in d.items() if "per_second" in k or k == "generated_tokens"})
PY
fi

# 3. Issue 18: DPO and SFT against TRL 1.16 and sampling against vLLM on a random-init Qwen2.5-0.5B
#    (494M parameters, real vocabulary 151936; built in seconds, no download), bf16 on both sides,
#    flash_attention_2 on both sides when flash-attn is installed, else sdpa. Each prints podium/TRL ratios,
#    absolute training-loop tokens/s and MFU per side (peak: podium's bf16 matmul measurement on this GPU);
#    JSON lines in benchmarks/results/. About 7 minutes in all (estimated: not yet run on a GPU); each run is capped.
B="--preset qwen2.5-0.5b --device cuda --repeats 1 --steps 16 --batch-size 8"
PYTHONPATH=src timeout 240 $PY benchmarks/dpo_vs_trl.py $B --pairs 128 2>&1 | tail -30 | tee gpu_check/dpo_vs_trl.log
if $PY -c "from transformers.utils import is_flash_attn_2_available as f; raise SystemExit(not f())"; then
  # Under flash attention podium cannot share the prompt (it takes no prepared mask): also its sdpa layout.
  PYTHONPATH=src timeout 240 $PY benchmarks/dpo_vs_trl.py $B --pairs 128 --attn sdpa --sets prompt-heavy 2>&1 \
    | tail -15 | tee gpu_check/dpo_vs_trl_sdpa.log
fi
PYTHONPATH=src timeout 240 $PY benchmarks/sft_vs_trl.py $B --examples 128 2>&1 | tail -30 | tee gpu_check/sft_vs_trl.log
PEERS="static"
$PY -c "import vllm" 2>/dev/null && PEERS="static vllm" || echo "vllm not importable: sampling is timed against model.generate only"
PYTHONPATH=src timeout 300 $PY benchmarks/generate.py --preset qwen2.5-0.5b --device cuda --repeats 2 --peer $PEERS \
  2>&1 | tail -12 | tee gpu_check/generate.log
echo "done: see gpu_check/"
