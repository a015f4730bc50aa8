#!/usr/bin/env bash
# GPU checks of issue 16 that a CPU machine cannot run (accelerate runs FSDP and DeepSpeed on GPUs only;
# vLLM needs CUDA). Run from the repository root on a machine with at least one CUDA GPU:
#   bash scripts/gpu_check.sh            # ~10 minutes on one GPU once the packages are installed
#   bash scripts/gpu_check.sh speed      # only part 3 (issue 18: DPO/SFT vs TRL, sampling vs vLLM), ~7 minutes
#   bash scripts/gpu_check.sh fsdp       # only part 4 (issue 25: podium's FSDP2 under NCCL, fp32, bf16, offload), ~9 min, 2+ GPUs
# It prints what ran and what was skipped; results go to gpu_check/ (logs and metrics).
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "no CUDA GPU visible: nothing to check"; exit 1; }
[ -x .venv/bin/python ] || bash scripts/setup.sh dev
PY=.venv/bin/python
PART=${1:-all}
# Optional GPU packages (installed only when missing); each check skips itself when its package is missing.
if [ "$PART" = all ]; then
  $PY -c "import deepspeed" 2>/dev/null || $PY -m pip install -q deepspeed \
    || echo "deepspeed not installed: the ZeRO-3 check will be skipped"
fi
[ "$PART" = fsdp ] || $PY -c "import vllm" 2>/dev/null || $PY -m pip install -q vllm \
  || echo "vllm not installed: the vLLM checks will be skipped"
mkdir -p gpu_check
export HF_HUB_OFFLINE=1

if [ "$PART" = all ]; then

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

if [ "$PART" = all ] || [ "$PART" = speed ]; then
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
fi

# 4. Issue 25: podium's FSDP2 on 2 GPUs over NCCL, the CPU tests of tests/integration/test_fsdp.py on CUDA:
#    sft, every train objective and LoRA sharded = one process with accumulation 2 (fp32, TF32 off: to 1e-5),
#    per-rank parameters/gradients/optimizer halved, kill -9 resume, 2 -> 1 -> 2 resume, damaged-checkpoint
#    fallback; then the sweep again in bf16 (MixedPrecisionPolicy) against the fp32 twins at a bf16 tolerance;
#    then measured per-GPU peaks (torch.cuda.max_memory_allocated) next to podium's estimate.
#    Rank-local loading (each rank reads only its rows of the weight files) is the default in all of these; the
#    sweep also trains DPO on Llama/Qwen2/Gemma-2/Mixtral loaded rank-locally and whole (equal weights). Then the
#    sweep with FSDP2's CPU offload (rank-local shards filled in host memory, buffers on the GPUs), and the host
#    memory of whole vs rank-local loading of a 168M model onto 2 GPUs (benchmarks/rank_local_memory.py).
#    Not run yet: no GPU was available where these were written.
if [ "$PART" = all ] || [ "$PART" = fsdp ]; then
  if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
    PODIUM_FSDP_TEST_DEVICE=cuda NVIDIA_TF32_OVERRIDE=0 timeout 900 $PY -m pytest -q -rs -m integration \
      tests/integration/test_fsdp.py 2>&1 | tee gpu_check/fsdp.log
    PODIUM_FSDP_TEST_DEVICE=cuda PODIUM_FSDP_TEST_BF16=1 timeout 600 $PY -m pytest -q -rs -m integration \
      tests/integration/test_fsdp.py -k equals 2>&1 | tee gpu_check/fsdp_bf16.log
    PODIUM_MEMORY_DEVICE=cuda timeout 600 $PY benchmarks/sharded_memory.py 2>&1 | tee gpu_check/fsdp_memory.log
    PODIUM_FSDP_TEST_DEVICE=cuda PODIUM_FSDP_TEST_OFFLOAD=1 NVIDIA_TF32_OVERRIDE=0 timeout 600 $PY -m pytest -q -rs \
      -m integration tests/integration/test_fsdp.py -k equals 2>&1 | tee gpu_check/fsdp_offload.log
    PODIUM_MEMORY_DEVICE=cuda timeout 300 $PY benchmarks/rank_local_memory.py --no-record 2>&1 \
      | tee gpu_check/fsdp_rank_local_memory.log
  else
    echo "fewer than 2 GPUs: the FSDP2 checks (part 4) need 2 (NCCL ranks on distinct GPUs); skipped"
  fi
fi
echo "done: see gpu_check/"
