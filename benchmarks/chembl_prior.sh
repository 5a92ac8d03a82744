#!/usr/bin/env bash
# The molgpt-chembl prior on a CPU, resumable across sessions (issue 28). Stages, each skipped
# when its output exists and resumed from its last.ckpt when it was interrupted:
#   1. (PHASE=long) a further pretraining phase of the shipped checkpoint, 5,000 steps with
#      length-grouped batches: configs/pretrain/molgpt_chembl_cpu.yaml + configs/pretrain/molgpt_chembl_cpu_long.yaml
#      (PHASE=continue, or PHASES=1: the earlier 1,200-step phase, molgpt_chembl_cpu_continue.yaml)
#      PHASE=extended: 2,000 steps on the extended split (140k training SMILES, 10k held out),
#      molgpt_chembl_cpu_extended.yaml; PHASE=extended2: that, then 5,000 steps × 256 on two DDP
#      processes of one thread each from its export (+ molgpt_chembl_cpu_extended2.yaml). The
#      extended phases are judged against their own held-out 10k (sample_quality.py --data chembl-extended).
#      PHASE=distill: self-distillation of the shipped checkpoint: DISTILL_N (default 100,000)
#      samples of it per core (2 one-thread processes, seeds 0 and 1; benchmarks/valid_samples.py
#      keeps the valid ones), resampled to the training SMILES' length histogram
#      (benchmarks/length_matched.py; DISTILL_MATCH=none keeps them as drawn), the extended
#      split's 140k training SMILES + those, then 1,200 steps × 256 on two DDP processes
#      (configs/pretrain/molgpt_chembl_cpu_distill.yaml); judged like the extended phases.
#      DISTILL_ROUNDS=r repeats it r times, each round from the last round's export (its own
#      samples, seeds 10r and 10r + 1, under runs/distill/round<r>).
#      DISTILL_FROM=EXPORT distils that export instead of the shipped checkpoint, under
#      DISTILL_ROOT (default runs/distill) and runs/pretrain/molgpt_chembl_cpu_distill<DISTILL_TAG>….
#      PHASE=fresh: 4,000 steps × 128 of the shipped checkpoint on the extended split rewritten
#      with fresh ring labels (networks/ring_labels.py; configs/pretrain/molgpt_chembl_cpu_fresh_rings.yaml).
#      PHASE=more / PHASE=randomized: 2,800 steps × 128 of the shipped checkpoint on the extended
#      split, canonical / 10 randomized SMILES per molecule (configs/pretrain/molgpt_chembl_cpu_randomized.yaml).
#   2. the validity stage from the shipped checkpoint (or from stage 1's export): by default the
#      offline one with a likelihood term (VARIANT=sft), which keeps the molecules' size:
#      configs/era/qed_chembl_cpu.yaml + configs/pretrain/molgpt_chembl_validity_cpu.yaml
#        + configs/pretrain/molgpt_chembl_validity_sft_cpu.yaml
#      VARIANT=online: configs/era/qed_chembl_online_cpu.yaml + configs/pretrain/molgpt_chembl_validity_cpu.yaml
#      (faster to high validity, but it learns shorter SMILES: checkpoints/molgpt-chembl/README.md)
#      VARIANT=none: no validity stage; the pretraining phase's export is the candidate
#   3. the export with bf16 weights (the size the repository ships), then the quality table on
#      N samples without top-k and at top-k 5 (benchmarks/sample_quality.py --data chembl, or
#      chembl-extended after an extended phase; FCD against FCD_REF random held-out ChEMBL
#      molecules, or all of them with FCD_REF=all) in runs/chembl_prior/quality.md.
#   benchmarks/chembl_prior.sh                 # all stages
#   benchmarks/chembl_prior.sh trend DIR       # validity etc. of an intermediate export on 2,000 samples
# Run it niced on a shared machine: nohup nice -n 15 benchmarks/chembl_prior.sh > runs/chembl_prior/log &
# THREADS (default 1) CPU threads per stage: float rounding depends on the thread count and the
# validity stages amplify it (the online stage's step-100 export: 0.916 valid with 1 thread, 0.906
# with 2), so a stage is made again exactly only with the same count on the same kind of CPU.
# Replacing checkpoints/molgpt-chembl is a manual step, after comparing the table with its card.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
N=${N:-10000}
FCD_REF=${FCD_REF:-10000}
PHASE=${PHASE:-$([[ "${PHASES:-0}" == 1 ]] && echo continue || true)}
VARIANT=${VARIANT:-sft}
OUT=runs/chembl_prior
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
mkdir -p "$OUT"

fit() {  # fit RUN_DIR CONFIG... : train unless RUN_DIR/pretrained exists from a finished run
  local dir=$1; shift
  local args=()
  for c in "$@"; do args+=(--config "$c"); done
  if [[ -f "$dir/done" ]]; then echo "skip $dir: finished"; return; fi
  if [[ -f "$dir/checkpoints/last.ckpt" ]]; then args+=(--ckpt_path "$dir/checkpoints/last.ckpt"); fi
  "$PY" main.py fit "${args[@]}" "${EXTRA[@]}"
  touch "$dir/done"
}

if [[ "${1:-}" == trend ]]; then
  "$PY" benchmarks/sample_quality.py --model "$2" --data chembl --n 2000 --top-k 0 --fcd-reference "$FCD_REF"
  exit
fi

START=checkpoints/molgpt-chembl
EXTRA=()
DATA=chembl
BASE=configs/pretrain/molgpt_chembl_cpu.yaml
case "$PHASE" in
  "") ;;
  continue|long)
    fit "runs/pretrain/molgpt_chembl_cpu_$PHASE" "$BASE" "configs/pretrain/molgpt_chembl_cpu_$PHASE.yaml"
    START="runs/pretrain/molgpt_chembl_cpu_$PHASE/pretrained" ;;
  extended|extended2)
    DATA=chembl-extended
    fit runs/pretrain/molgpt_chembl_cpu_extended "$BASE" configs/pretrain/molgpt_chembl_cpu_extended.yaml
    START=runs/pretrain/molgpt_chembl_cpu_extended/pretrained
    if [[ "$PHASE" == extended2 ]]; then
      fit runs/pretrain/molgpt_chembl_cpu_extended2 "$BASE" configs/pretrain/molgpt_chembl_cpu_extended.yaml \
        configs/pretrain/molgpt_chembl_cpu_extended2.yaml
      START=runs/pretrain/molgpt_chembl_cpu_extended2/pretrained
    fi ;;
  distill)
    DATA=chembl-extended
    TRAIN_SPLIT=$("$PY" -c "from datamodules.sources import chembl_extended_split as s; print(s()['train'])")
    HOLDOUT=$("$PY" -c "from datamodules.sources import chembl_extended_split as s; print(s()['holdout'])")
    DROOT=${DISTILL_ROOT:-runs/distill} START=${DISTILL_FROM:-$START}
    mkdir -p "$DROOT"
    [[ -f $DROOT/holdout.smi ]] || cp "$HOLDOUT" "$DROOT/holdout.smi"
    for round in $(seq 1 "${DISTILL_ROUNDS:-1}"); do  # round r distils round r-1's export
      SDIR=$DROOT SEEDS=(0 1)
      [[ $round == 1 ]] || { SDIR=$DROOT/round$round; SEEDS=($((10 * round)) $((10 * round + 1))); }
      mkdir -p "$SDIR"
      pids=()
      for seed in "${SEEDS[@]}"; do
        if [[ ! -f "$SDIR/valid_seed$seed.smi" ]]; then
          "$PY" benchmarks/valid_samples.py --model "$START" --n "${DISTILL_N:-100000}" --seed "$seed" \
            --out "$SDIR/valid_seed$seed.smi" & pids+=($!)
        fi
      done
      for pid in "${pids[@]}"; do wait "$pid"; done  # set -e: a failed sampler stops the script
      SAMPLES=("$SDIR/valid_seed${SEEDS[0]}.smi" "$SDIR/valid_seed${SEEDS[1]}.smi")
      SUFFIX=${DISTILL_TAG:-}$([[ $round == 1 ]] || echo "$round")
      if [[ "${DISTILL_MATCH:-length}" == length ]]; then
        DDIR=$SDIR/matched RUN=runs/pretrain/molgpt_chembl_cpu_distill_matched$SUFFIX
        [[ -f $DDIR/valid_matched.smi ]] || "$PY" benchmarks/length_matched.py --reference "$TRAIN_SPLIT" \
          --samples "${SAMPLES[@]}" --out $DDIR/valid_matched.smi
        SAMPLES=($DDIR/valid_matched.smi)
      else
        DDIR=$SDIR RUN=runs/pretrain/molgpt_chembl_cpu_distill$SUFFIX
      fi
      if [[ ! -f $DDIR/train.smi ]]; then  # written whole, then renamed: never a partial file
        cat "$TRAIN_SPLIT" "${SAMPLES[@]}" > $DDIR/.train.smi.part && mv $DDIR/.train.smi.part $DDIR/train.smi
      fi
      EXTRA=(--data.init_args.train $DDIR/train.smi --data.init_args.val "$DROOT/holdout.smi"
             --trainer.default_root_dir $RUN --model.init_args.architecture.init_args.path "$START")
      fit $RUN "$BASE" configs/pretrain/molgpt_chembl_cpu_distill.yaml
      EXTRA=()
      START=$RUN/pretrained
    done ;;
  fresh)
    DATA=chembl-extended
    fit runs/pretrain/molgpt_chembl_cpu_fresh_rings "$BASE" configs/pretrain/molgpt_chembl_cpu_fresh_rings.yaml
    START=runs/pretrain/molgpt_chembl_cpu_fresh_rings/pretrained ;;
  more|randomized)
    DATA=chembl-extended RUN=runs/pretrain/molgpt_chembl_cpu_$([[ $PHASE == more ]] && echo canonical_more || echo randomized)
    EXTRA=(--trainer.default_root_dir $RUN)
    [[ $PHASE == randomized ]] || EXTRA+=(--data.init_args.randomized 0)
    fit $RUN "$BASE" configs/pretrain/molgpt_chembl_cpu_randomized.yaml
    EXTRA=() START=$RUN/pretrained ;;
  *) echo "PHASE must be continue, long, extended, extended2, distill, fresh, more or randomized, not '$PHASE'" >&2; exit 2 ;;
esac
# the validity stage's folder names its start, so that a stage begun from the shipped model is
# never resumed (its last.ckpt) on top of a further pretraining phase, or the other way round
AFTER=${PHASE:+_after_$PHASE}
if [[ "$VARIANT" == none ]]; then
  [[ -n "$PHASE" ]] || { echo "VARIANT=none needs a PHASE: without one there is nothing to train" >&2; exit 2; }
  STAGE=${START%/pretrained}
elif [[ "$VARIANT" == online ]]; then
  STAGE=runs/pretrain/molgpt_chembl_validity_cpu$AFTER
  CONFIGS=(configs/era/qed_chembl_online_cpu.yaml configs/pretrain/molgpt_chembl_validity_cpu.yaml)
else
  STAGE=runs/pretrain/molgpt_chembl_validity_sft_cpu$AFTER
  CONFIGS=(configs/era/qed_chembl_cpu.yaml configs/pretrain/molgpt_chembl_validity_cpu.yaml
           configs/pretrain/molgpt_chembl_validity_sft_cpu.yaml)
fi
if [[ "$VARIANT" != none ]]; then
  EXTRA=(--model.init_args.policy.init_args.path "$START" --model.init_args.tokenizer "$START" --trainer.default_root_dir "$STAGE")
  fit "$STAGE" "${CONFIGS[@]}"
fi

STAGE="$STAGE" "$PY" - <<'EOF'
import os
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
src, dst = os.environ["STAGE"] + "/pretrained", "runs/chembl_prior/candidate"
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).to(torch.bfloat16)
model.save_pretrained(dst)
AutoTokenizer.from_pretrained(src).save_pretrained(dst)
print("bf16 export:", dst)
EOF
"$PY" benchmarks/sample_quality.py --model "$OUT/candidate" --data "$DATA" --n "$N" --top-k 0 5 \
  --fcd-reference "$FCD_REF" | tee "$OUT/quality.md"
