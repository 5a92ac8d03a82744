#!/usr/bin/env bash
# A separate virtual environment with TRL for benchmarks/vs_trl.py — never part of rewardfit's own
# dependencies. Same torch and transformers as rewardfit's venv, so both sides run the same kernels.
#   bash benchmarks/trl_venv.sh [VENV]        (default: .venv-trl next to .venv)
# Pins: TORCH_VERSION (2.13.0), TRL_VERSION (1.13.0); transformers follows rewardfit's venv.
# requests: TRL 1.13 imports it for RLOOTrainer (its vLLM client) without declaring it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-trl}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TRL_VERSION=${TRL_VERSION:-1.13.0}
PYTHON=${PYTHON:-python3}
if [ -f "$VENV/.installed" ]; then echo "$VENV ready"; exit 0; fi
TRANSFORMERS_VERSION=${TRANSFORMERS_VERSION:-$(.venv/bin/python -c 'import transformers; print(transformers.__version__)' 2>/dev/null || echo '')}
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Pin torch first: an unpinned torch pulls a multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" "trl==$TRL_VERSION" \
    ${TRANSFORMERS_VERSION:+"transformers==$TRANSFORMERS_VERSION"} rdkit pandas pyarrow requests
# rewardfit's oracles score the TRL side's samples (same reward); the repo goes on sys.path from
# benchmarks/vs_trl.py, so nothing of rewardfit is installed here.
touch "$VENV/.installed"
echo "$VENV ready: $("$VENV/bin/python" -c 'import torch, transformers, trl; print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__)')"
