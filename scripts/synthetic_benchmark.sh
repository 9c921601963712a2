#!/usr/bin/env bash
# The synthetic benchmark (docs/quality_benchmark.md): the style model and the pix2pixHD baseline trained
# with the same budget on the offline synthetic set, then `faceregen eval` prints the table.
#   STEPS=700 OUT=checkpoints/benchmark scripts/synthetic_benchmark.sh [train overrides...]
# Further arguments are Hydra overrides given to both training runs (e.g. model.generator.ngf=16).
set -euo pipefail
STEPS=${STEPS:-700}
OUT=${OUT:-checkpoints/benchmark}
FACEREGEN=${FACEREGEN:-faceregen}
budget=(trainer.max_steps="$STEPS" trainer.max_minutes=null trainer.resume=auto)

"$FACEREGEN" train hydra.run.dir="$OUT/style" "${budget[@]}" "$@"
"$FACEREGEN" train +experiment=synthetic_baseline hydra.run.dir="$OUT/baseline" "${budget[@]}" "$@"
"$FACEREGEN" eval ckpt="$OUT/style/checkpoints/last.pt" \
  baseline_ckpt="$OUT/baseline/checkpoints/last.pt" hydra.run.dir="$OUT/eval"
echo "table: $OUT/eval/table.md"
