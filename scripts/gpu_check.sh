#!/usr/bin/env bash
# GPU checks of issue 16 that a CPU machine cannot run (accelerate runs FSDP and DeepSpeed on GPUs only;
# vLLM needs CUDA). Run from the repository root on a machine with at least one CUDA GPU:
#   bash scripts/gpu_check.sh            # ~10 minutes on one GPU once the packages are installed
# It prints what ran and what was skipped; results go to gpu_check/ (logs and metrics).
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "no CUDA GPU visible: nothing to check"; exit 1; }
[ -x .venv/bin/python ] || bash scripts/setup.sh dev
PY=.venv/bin/python
# Optional GPU packages; each check skips itself when its package is missing.
$PY -m pip install -q deepspeed || echo "deepspeed not installed: the ZeRO-3 check will be skipped"
$PY -m pip install -q vllm || echo "vllm not installed: the vLLM checks will be skipped"
mkdir -p gpu_check
export HF_HUB_OFFLINE=1

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
# 3. Issue 18: DPO and SFT against TRL 1.16 on the GPU (bf16 on both sides, the benchmarks' tiny Llama).
#    Ratios print; JSON lines in benchmarks/results/. (benchmarks/generate.py has no --device: it runs on CPU only.)
PYTHONPATH=src timeout 600 $PY benchmarks/dpo_vs_trl.py --device cuda 2>&1 | tail -20 | tee gpu_check/dpo_vs_trl.log
PYTHONPATH=src timeout 600 $PY benchmarks/sft_vs_trl.py --device cuda 2>&1 | tail -20 | tee gpu_check/sft_vs_trl.log
echo "done: see gpu_check/"
