#!/usr/bin/env bash
# The first-GPU check (issue #24): sampler vs transformers `generate` at batch 4,096, pretraining
# tokens/s in bf16 and fp32, and where one online ERA round's time goes — written as Markdown to
# $OUT/gpu_check.md (or ./gpu_check.md), ready for docs/benchmarks.md. Under 10 minutes on an H100.
#
#   bash benchmarks/gpu_check.sh            # on a GPU machine (RDKit wheels in .whl/ if python lacks it)
#   SMOKE=1 bash benchmarks/gpu_check.sh    # the CPU path with tiny sizes (what the test runs)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_python.sh
export REWARDFIT_PRECISION=${REWARDFIT_PRECISION:-auto}
REPORT=${OUT:-.}/gpu_check.md
if [ "${SMOKE:-0}" = 1 ]; then
    DEV=cpu; SAMPLE="--batch-sizes 32 --n 32 --max-new-tokens 20 --repeats 1 --precisions fp32"
    TRAIN="--batch-sizes 8 --steps 2 --length 16 --precisions fp32"; ROUND="--steps 2 --warmup 0"
    ROUND_ARGS="--model.init_args.num_samples=16 --model.init_args.resample_every=1 --model.init_args.max_new_tokens=20 --model.init_args.val_samples=16"
else
    DEV=cuda; SAMPLE="--batch-sizes 1024 4096 --n 8192 --repeats 2 --precisions fp32 bf16"
    TRAIN="--batch-sizes 256 1024 --steps 50 --precisions fp32 bf16"; ROUND="--steps 20 --warmup 2"
    ROUND_ARGS="--trainer.accelerator=gpu --model.init_args.num_samples=1024"
fi
{
    echo "# GPU check — $(date -u +%Y-%m-%d), $($PY -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")')"
    echo; echo "## Sampling: rewardfit vs transformers generate (molgpt-moses, top-k 5)"; echo
    $PY benchmarks/sampling.py --model checkpoints/molgpt-moses --device $DEV $SAMPLE 2>/dev/null
    echo; echo "## Pretraining throughput (molgpt-moses architecture)"; echo
    $PY benchmarks/train_throughput.py --device $DEV $TRAIN 2>/dev/null
    echo; echo "## One online ERA round (configs/era/qed_online_cpu.yaml)"; echo
    $PY benchmarks/round_profile.py --config configs/era/qed_online_cpu.yaml $ROUND -- $ROUND_ARGS 2>/dev/null
} | tee "$REPORT"
echo "written: $REPORT" >&2
