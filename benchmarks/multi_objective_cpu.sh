#!/bin/bash
# IRS vs Rewarded Soups vs MORLHF on rdkit_tri at a CPU scale (issue 8), 3 seeds, from
# checkpoints/molgpt-moses: 32 samples per expert update, lr 1e-4, 120 expert updates per run
# (IRS 2 of 3 experts × 60 steps, m = 4; RS 3 × 40; MORLHF 1 × 120, uniform c), fronts from
# simplex soups (step 0.25, 128 samples each). Then IRS with ERA updates vs PPO updates (seed 0).
# Writes runs/mo_cpu/<run>/front.csv and runs/mo_cpu/report/.
#   bash benchmarks/multi_objective_cpu.sh [parallel jobs, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-2}
OUT=runs/mo_cpu
run() {  # method seed steps extra-json-callbacks extra-args...
  local method=$1 seed=$2 steps=$3 merging=$4; shift 4
  local name=${method}_s${seed}
  [ -f "$OUT/$name/front.csv" ] && return 0
  local front="{\"class_path\": \"callbacks.SoupFront\", \"init_args\": {\"step\": 0.25, \"num_samples\": 128, \"reference\": [0.0, 1.0, 5.0], \"method\": \"$method\", \"dirpath\": \"$OUT/$name\"}}"
  local callbacks="[$front]"
  [ -n "$merging" ] && callbacks="[$merging, $front]"
  OMP_NUM_THREADS=1 ${PYTHON:-python} main.py fit --config configs/${method%%-*}/rdkit_tri.yaml --seed_everything "$seed" \
    --trainer.max_steps "$steps" --trainer.val_check_interval "$steps" --trainer.logger false \
    --trainer.enable_checkpointing false --trainer.enable_progress_bar false --trainer.callbacks "$callbacks" \
    --trainer.default_root_dir "$OUT/$name" --model.init_args.samples_per_step 32 --model.init_args.lr 1.0e-4 \
    --model.init_args.val_samples 64 --model.init_args.seed "$seed" "$@" > "$OUT/$name.log" 2>&1
}
mkdir -p "$OUT"
merge() { echo "{\"class_path\": \"callbacks.WeightMergingCallback\", \"init_args\": {\"every_n_steps\": 4, \"num_active\": 2, \"seed\": $1}}"; }
ERA='{"class_path": "lightning_modules.policy_updates.ERAUpdate", "init_args": {"beta": 10.0}}'
PPO='{"class_path": "lightning_modules.policy_updates.PPO", "init_args": {"inner_steps": 2}}'
pids=()
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done; }
for seed in 0 1 2; do
  throttle; run irs "$seed" 60 "$(merge "$seed")" &
  throttle; run rs "$seed" 40 "" &
  throttle; run morlhf "$seed" 120 "" &
done
throttle; run irs-era 0 60 "$(merge 0)" --model.init_args.update "$ERA" &
throttle; run irs-ppo 0 60 "$(merge 0)" --model.init_args.update "$PPO" &
wait
${PYTHON:-python} -m lightning_modules.pareto $OUT/irs_s*/front.csv $OUT/rs_s*/front.csv $OUT/morlhf_s*/front.csv --ref 0 1 5 --out $OUT/report
${PYTHON:-python} -m lightning_modules.pareto $OUT/irs-era_s0/front.csv $OUT/irs-ppo_s0/front.csv $OUT/irs_s0/front.csv --ref 0 1 5 --out $OUT/report_updates
