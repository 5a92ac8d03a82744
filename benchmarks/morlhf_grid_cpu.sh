#!/bin/bash
# MORLHF over a weight grid (issue 8), at the CPU scale of benchmarks/multi_objective_cpu.sh:
# one MORLHF policy per weight vector c on the simplex (step 0.5: the 3 vertices, 3 edge
# midpoints; the uniform c is multi_objective_cpu.sh's morlhf_s<seed>), 120 updates of 32 samples
# each, lr 1e-4; the grid's front is the union of the runs' points, written as
# runs/mo_cpu/morlhf-grid_s<seed>/front.csv and compared with IRS and RS by hypervolume.
#   bash benchmarks/morlhf_grid_cpu.sh [seed, default 0] [parallel jobs, default 2]
# POLICY=<dir> selects another reference model (default: the shipped molgpt-moses).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-0}
JOBS=${2:-2}
OUT=runs/mo_cpu
PY=${PYTHON:-python}
EXTRA=()
[ -n "${POLICY:-}" ] && EXTRA=(--model.init_args.policy.init_args.path "$POLICY" --model.init_args.tokenizer "$POLICY")
run() {  # name weights
  local name=$1 weights=$2
  [ -f "$OUT/$name/front.csv" ] && return 0
  local front="{\"class_path\": \"callbacks.SoupFront\", \"init_args\": {\"step\": 0.25, \"num_samples\": 128, \"reference\": [0.0, 1.0, 5.0], \"method\": \"morlhf\", \"dirpath\": \"$OUT/$name\"}}"
  OMP_NUM_THREADS=1 $PY main.py fit --config configs/morlhf/rdkit_tri.yaml --seed_everything "$SEED" \
    --trainer.max_steps 120 --trainer.val_check_interval 120 --trainer.logger false \
    --trainer.enable_checkpointing false --trainer.enable_progress_bar false --trainer.callbacks "[$front]" \
    --trainer.default_root_dir "$OUT/$name" --model.init_args.samples_per_step 32 --model.init_args.lr 1.0e-4 \
    --model.init_args.val_samples 64 --model.init_args.seed "$SEED" --model.init_args.scalarization "$weights" \
    "${EXTRA[@]}" > "$OUT/$name.log" 2>&1
}
mkdir -p "$OUT"
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done; }
i=0
for w in "[1.0, 0.0, 0.0]" "[0.0, 1.0, 0.0]" "[0.0, 0.0, 1.0]" "[0.5, 0.5, 0.0]" "[0.5, 0.0, 0.5]" "[0.0, 0.5, 0.5]"; do
  throttle; run "morlhf-w${i}_s${SEED}" "$w" &
  i=$((i + 1))
done
wait
$PY - "$OUT" "$SEED" <<'PY'
import sys
from pathlib import Path

import pandas as pd

out, seed = Path(sys.argv[1]), sys.argv[2]
files = [out / f"morlhf_s{seed}" / "front.csv", *sorted(out.glob(f"morlhf-w*_s{seed}/front.csv"))]
frame = pd.concat([pd.read_csv(f) for f in files if f.is_file()], ignore_index=True).assign(method="morlhf-grid")
(out / f"morlhf-grid_s{seed}").mkdir(exist_ok=True)
frame.to_csv(out / f"morlhf-grid_s{seed}" / "front.csv", index=False)
print(f"morlhf-grid_s{seed}: {len(frame)} points from {len(files)} runs")
PY
$PY -m lightning_modules.pareto $OUT/irs_s${SEED}/front.csv $OUT/rs_s${SEED}/front.csv $OUT/morlhf_s${SEED}/front.csv \
  $OUT/morlhf-grid_s${SEED}/front.csv --ref 0 1 5 --out $OUT/report_grid_s${SEED}
