#!/usr/bin/env bash
# The online ERA β sweep of docs/era.md ("The online β sweep from the shipped phase-7 molgpt-moses"):
# one `main.py fit` per β × seed with configs/era/qed_online_cpu.yaml (γ = 9, the invalid term,
# clipping at 1), one after another, each in OUT/b{β}_seed{S}. A run that already wrote its
# summary.json is skipped, so an interrupted sweep is resumed by running the same command again.
# Then evaluate every run on one shared sample set and collect the curve:
#
#   bash benchmarks/era_online_beta_sweep.sh runs/era_p7_online "20 50 100 200 500 1000" "0 1 2"
#   python benchmarks/era_reevaluate.py runs/era_p7_online/b* --n 5000 --seed 100
#   python benchmarks/era_beta_curve.py runs/era_p7_online/b* --summary summary_n5000_seed100.json
#
# Extra arguments after the third are passed to every run (e.g. --trainer.max_steps 600).
# METHOD=DPO runs the DPO baseline on the same recipe instead (β is then DPO's β; runs in
# OUT/dpo_b{β}_seed{S}), as in docs/era.md's "DPO at matched energy":
#   METHOD=DPO bash benchmarks/era_online_beta_sweep.sh runs/era_p7_online "0.5 0.1" 0 --trainer.val_check_interval 100
# ≈ 9 min per run on one CPU core.
set -euo pipefail
out=${1:?usage: era_online_beta_sweep.sh OUT "BETAS" "SEEDS" [main.py arguments...]}
betas=${2:?give the β values, e.g. "20 50 100"}
seeds=${3:?give the seeds, e.g. "0 1 2"}
shift 3
python=${PYTHON:-python}
method=${METHOD:-ERA}
case $method in
  ERA) prefix=b ;;
  DPO) prefix=dpo_b ;;
  *) echo "METHOD must be ERA or DPO, got $method" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
for seed in $seeds; do
  for beta in $betas; do
    run="$out/${prefix}${beta}_seed${seed}"
    if [[ $method == ERA ]]; then
      objective="{\"class_path\": \"lightning_modules.pair_losses.ERA\", \"init_args\": {\"beta\": $beta, \"gamma\": 9.0}}"
    else
      objective="{\"class_path\": \"lightning_modules.pair_losses.DPO\", \"init_args\": {\"beta\": $beta}}"
    fi
    if [[ -f "$run/summary.json" ]]; then echo "$run: done"; continue; fi
    mkdir -p "$run"
    start=$SECONDS
    "$python" main.py fit --config configs/era/qed_online_cpu.yaml --model.init_args.seed "$seed" \
      --model.init_args.objective "$objective" \
      --model.init_args.invalid_weight 1.0 --model.init_args.invalid_beta 0.5 \
      --trainer.default_root_dir "$run" --model.init_args.plot_dir "$run" "$@" > "$run/log.txt" 2>&1 \
      && echo "$run: done in $((SECONDS - start)) s" || echo "$run: failed (exit $?), see $run/log.txt"
  done
done
