#!/usr/bin/env bash
# The regional benchmark (docs/quality_benchmark.md, "Regional against global"): the global style
# model and the regional one (model=style_regional) trained with the same budget on the offline
# synthetic set, then `faceregen eval` with the regional model as `model` and the global one as
# `baseline`, so that every table (region mixing included) has the global row to beat; last,
# scripts/regional_verdict.py checks the numbers against the regional model's target.
#   STEPS=5000 OUT=checkpoints/regional_benchmark scripts/regional_benchmark.sh [train overrides...]
# Further arguments are Hydra overrides given to both training runs; EVAL_ARGS (space-separated)
# go to `faceregen eval` (e.g. EVAL_ARGS="max_images=64").
set -euo pipefail
STEPS=${STEPS:-5000}
OUT=${OUT:-checkpoints/regional_benchmark}
FACEREGEN=${FACEREGEN:-faceregen}
PYTHON=${PYTHON:-python3}
budget=(trainer.max_steps="$STEPS" trainer.max_minutes=null trainer.resume=auto)
read -r -a eval_args <<< "${EVAL_ARGS:-}"

"$FACEREGEN" train hydra.run.dir="$OUT/global" "${budget[@]}" "$@"
"$FACEREGEN" train model=style_regional hydra.run.dir="$OUT/regional" "${budget[@]}" "$@"
"$FACEREGEN" eval ckpt="$OUT/regional/checkpoints/last.pt" \
  baseline_ckpt="$OUT/global/checkpoints/last.pt" hydra.run.dir="$OUT/eval" \
  ${eval_args[@]+"${eval_args[@]}"}
"$PYTHON" "$(dirname "$0")/regional_verdict.py" "$OUT/eval/metrics.json"
