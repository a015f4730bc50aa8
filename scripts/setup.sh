#!/usr/bin/env bash
# Set up podium in ./.venv on a fresh machine. On a machine without CUDA, torch comes
# from the CPU build first, so no multi-GB CUDA wheel is ever pulled in.
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh dev      # + test tools and the peers used as test oracles
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q "torch>=2.4"
  else
    # The CPU wheel (2.13.0 lies on this project's machines; elsewhere the CPU index serves it).
    python -m pip install -q torch==2.13.0 \
      || python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[$extras]"
else
  python -m pip install -q -e .
fi
python -c "import podium, torch; print(f'podium {podium.__version__} ready (torch {torch.__version__})')"
