#!/usr/bin/env bash
# Validity against FCD for every molgpt-chembl candidate of issue 28 and sampling temperature:
# one 10,000-sample row each (benchmarks/sample_quality.py --data chembl-extended --top-k 0
# --fcd-reference all (FCD_REF=n: n random held-out molecules), seed 0 unless given, one thread), appended to one CSV; rows already there (by label)
# are skipped, so it resumes. Candidates other than the shipped weights are the local exports of
# benchmarks/chembl_prior.sh's phases (fp32, under runs/pretrain/); missing ones are skipped.
# The "shipped seed s" rows are the same weights and settings with other sampling seeds: how far
# validity and FCD move between two draws of 10,000.
#   benchmarks/prior_frontier.sh [CSV]          # default docs/results/chembl_prior_frontier.csv
#   PART=1/2 benchmarks/prior_frontier.sh CSV   # every second row from the first: two of these
#                                               # side by side (each its own CSV) use two cores
#   python benchmarks/plot_prior_frontier.py --csv CSV --out docs/img/chembl_prior_frontier.png
set -euo pipefail
cd "$(dirname "$0")/.."
CSV=${1:-docs/results/chembl_prior_frontier.csv}
PY=${PY:-python}
PART=${PART:-1/1}
export OMP_NUM_THREADS=${THREADS:-1}
P=runs/pretrain/molgpt_chembl_cpu
# label | model | temperature | top-k [| seed]
ROWS="shipped|checkpoints/molgpt-chembl|1|0
shipped T0.95|checkpoints/molgpt-chembl|0.95|0
shipped T0.9|checkpoints/molgpt-chembl|0.9|0
shipped T0.85|checkpoints/molgpt-chembl|0.85|0
shipped top-k 5|checkpoints/molgpt-chembl|1|5
+2800 canonical|${P}_canonical_more/pretrained|1|0
+2800 canonical T0.95|${P}_canonical_more/pretrained|0.95|0
+2800 canonical T0.9|${P}_canonical_more/pretrained|0.9|0
+2800 randomized x10|${P}_randomized/pretrained|1|0
distill (length-matched)|${P}_distill_matched/pretrained|1|0
distill (length-matched) T0.95|${P}_distill_matched/pretrained|0.95|0
distill round 2|${P}_distill_matched2/pretrained|1|0
+2800 canonical + distill|${P}_distill_matched_more/pretrained|1|0
+2800 canonical + distill T0.95|${P}_distill_matched_more/pretrained|0.95|0
+2800 canonical + distill T0.9|${P}_distill_matched_more/pretrained|0.9|0
fresh ring labels|${P}_fresh_rings/pretrained|1|0
fresh ring labels + own samples|${P}_fresh_rings_mix/pretrained|1|0
distill round 2 T0.95|${P}_distill_matched2/pretrained|0.95|0
distill round 2 T0.9|${P}_distill_matched2/pretrained|0.9|0
shipped seed 1|checkpoints/molgpt-chembl|1|0|1
shipped seed 2|checkpoints/molgpt-chembl|1|0|2
shipped seed 3|checkpoints/molgpt-chembl|1|0|3
shipped seed 4|checkpoints/molgpt-chembl|1|0|4
+2800 canonical, open rings x3|${P}_open_rings3/pretrained|1|0
+2800 canonical, open rings x10|${P}_open_rings10/pretrained|1|0"
index=0; k=${PART%/*}; of=${PART#*/}
while IFS='|' read -r label model temperature topk seed; do
  index=$((index + 1))
  (( (index - k) % of == 0 )) || continue
  # the CSV's own parser: a label with a comma is quoted there
  if [[ -f "$CSV" ]] && "$PY" -c 'import csv, sys; sys.exit(all(r["label"] != sys.argv[2] for r in csv.DictReader(open(sys.argv[1]))))' \
       "$CSV" "$label"; then echo "skip $label: in $CSV"; continue; fi
  if [[ ! -f "$model/model.safetensors" ]]; then echo "skip $label: no $model"; continue; fi
  echo "== $label ($model, T $temperature, top-k $topk, seed ${seed:-0})"
  "$PY" benchmarks/sample_quality.py --model "$model" --data chembl-extended --n "${N:-10000}" \
    --top-k "$topk" --fcd-reference "${FCD_REF:-all}" --temperature "$temperature" --seed "${seed:-0}" --csv "$CSV" --label "$label"
done <<< "$ROWS"
