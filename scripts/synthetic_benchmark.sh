#!/usr/bin/env bash
# The synthetic benchmark (docs/quality_benchmark.md): the style model and the pix2pixHD baseline trained
# with the same budget on the offline synthetic set, then `faceregen eval` prints the table.
#   STEPS=700 OUT=checkpoints/benchmark scripts/synthetic_benchmark.sh [train overrides...]
# Further arguments are Hydra overrides given to both training runs (e.g. model.generator.ngf=16).
# STYLE_ARGS / BASELINE_ARGS: overrides for one run only, space-separated, for ablations of one
# model (e.g. STYLE_ARGS="model.generator.decoder_norm=adain", which the baseline cannot take).
# BASELINE=path/to/last.pt: score against that baseline checkpoint instead of training one
# (an ablation of the style model needs the baseline trained once).
set -euo pipefail
STEPS=${STEPS:-700}
OUT=${OUT:-checkpoints/benchmark}
FACEREGEN=${FACEREGEN:-faceregen}
budget=(trainer.max_steps="$STEPS" trainer.max_minutes=null trainer.resume=auto)
read -r -a style_args <<< "${STYLE_ARGS:-}"
read -r -a baseline_args <<< "${BASELINE_ARGS:-}"

"$FACEREGEN" train hydra.run.dir="$OUT/style" "${budget[@]}" "$@" \
  ${style_args[@]+"${style_args[@]}"}
baseline=${BASELINE:-$OUT/baseline/checkpoints/last.pt}
if [[ -z "${BASELINE:-}" ]]; then
  "$FACEREGEN" train +experiment=synthetic_baseline hydra.run.dir="$OUT/baseline" "${budget[@]}" \
    "$@" ${baseline_args[@]+"${baseline_args[@]}"}
fi
"$FACEREGEN" eval ckpt="$OUT/style/checkpoints/last.pt" \
  baseline_ckpt="$baseline" hydra.run.dir="$OUT/eval"
echo "table: $OUT/eval/table.md"
