#!/usr/bin/env bash
# The GPU speed suite in one command, on one H100 or H200 (docs/speed.md):
#   scripts/gpu_suite.sh [OUT_DIR]          (default checkpoints/gpu-suite)
# 1. scripts/bench.py --suite gpu: the pix2pixHD reference step, the baseline and the style model
#    at 512 px, bf16, channels_last, eager and compiled, batch 4 and 16, with kernel profiles of
#    the style model's eager and compiled step; table in OUT_DIR/suite.log. About five minutes
#    (estimated: nine rows of mixed kinds, four compiled, took 330 s on an H200; the default
#    seven have not been timed together). VARIANTS=1 adds the variant
#    rows (penalty schedules, layer forms, the penalty left eager, no label skips) and the
#    CUDA-graph rows, which do not fit in that time: pick them with ROWS="words;more words"
#    (bench.py --rows: the rows whose names hold one of the words, in that order).
#    PROFILE=0 drops the profiles; SUITE_SECONDS (default 420) caps this step. Then the
#    gradient penalty alone, 512 px, in its three eager forms (bench.py --task penalty: the
#    convolutions of its second differentiation and, with profiles, its kernels); PENALTY=0
#    skips it.
# 2. With ALL=1 also what earlier runs answered: the trainer's own loop at 512 px on synthetic
#    faces (loader wait against step time), eager and with trainer.cuda_graph=true, and at
#    128 px, batch 16 (an epoch every 100 steps: does the epoch boundary stall the loop?); the
#    loader alone with 4 and 12 workers; four 64 px trainings at once against one alone (how well
#    one GPU is shared by small runs). Their synthetic data is made in the background during
#    step 1 (low priority, few workers).
set -uo pipefail
out=${1:-checkpoints/gpu-suite}
py=${PYTHON:-python}
data="$out/data"
mkdir -p "$out" "$data"
log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" | tee -a "$out/progress.log"; }

make_data() {  # raw faces at the photo size, prepared at each size
  local root=$1 num=$2 size=$3; shift 3
  "$py" -m faceregen data synth --out "$root/synthetic/CelebAMask-HQ" --num "$num" \
    --size "$size" --workers 3 || return
  for prepared in "$@"; do
    "$py" -m faceregen data prepare --root "$root/synthetic/CelebAMask-HQ" \
      --out "$root/synthetic/prepared-$prepared" --size "$prepared" --workers 3 || return
  done
}
if [ "${ALL:-0}" = 1 ]; then
  (renice -n 19 "$BASHPID" > /dev/null; make_data "$data/s512" 400 512 512
   make_data "$data/s128" 2000 128 128 64) > "$out/data.log" 2>&1 &
  data_job=$!
fi

options=(--profile)
if [ "${PROFILE:-1}" = 0 ]; then options=(); fi
if [ "${VARIANTS:-0}" = 1 ]; then options+=(--variants); else options+=(--no-graphs); fi
if [ -n "${ROWS:-}" ]; then IFS=';' read -r -a rows <<< "$ROWS"; options+=(--rows "${rows[@]}"); fi
log "suite"
timeout "${SUITE_SECONDS:-420}" "$py" scripts/bench.py --suite gpu --device cuda --precision bf16 \
  --channels-last --steps 16 --warmup 3 "${options[@]}" --out "$out/suite.json" \
  2> >(grep -v "randomly initialised VGG19" | tee "$out/suite.log" >&2) > /dev/null
if [ "${PENALTY:-1}" = 1 ]; then
  log "penalty alone, its eager forms"
  penalty_options=(); if [ "${PROFILE:-1}" != 0 ]; then penalty_options=(--profile); fi
  timeout 120 "$py" scripts/bench.py --task penalty --device cuda --channels-last --steps 10 \
    --warmup 3 "${penalty_options[@]}" +experiment=celebamask --out "$out/penalty.json" \
    2> >(grep -v "randomly initialised VGG19" | tee "$out/penalty.log" >&2) > /dev/null
fi
if [ "${ALL:-0}" != 1 ]; then log "done"; exit 0; fi
wait "$data_job"

s512=(data=synthetic data.size=512 data.synth_size=512 data.synth_num=400 "paths.data=$data/s512")
log "trainer loop, 512 px, batch 4, 8 loader workers"
"$py" scripts/bench.py --task trainer --steps 60 --warmup 10 +experiment=celebamask "${s512[@]}" \
  data.num_workers=8 logger.enabled=false --out "$out/trainer-512.json" | tail -n 25
log "trainer loop, 512 px, batch 4, 8 loader workers, trainer.cuda_graph=true"
"$py" scripts/bench.py --task trainer --steps 60 --warmup 10 +experiment=celebamask "${s512[@]}" \
  data.num_workers=8 logger.enabled=false trainer.cuda_graph=true \
  --out "$out/trainer-512-graph.json" | tail -n 25
log "trainer loop, 128 px, batch 16"
"$py" scripts/bench.py --task trainer --steps 150 --warmup 20 trainer=gpu data.size=128 \
  data.batch_size=16 "paths.data=$data/s128" logger.enabled=false \
  --out "$out/trainer-128.json" | tail -n 25
for workers in 4 12; do
  log "loader alone, 512 px, batch 4, $workers workers"
  "$py" scripts/bench.py --task data --workers "$workers" --steps 100 --warmup 10 "${s512[@]}" \
    data.batch_size=4 --out "$out/loader-512-w$workers.json" | tail -n 6
done

train64=(trainer.device=cuda trainer.max_steps=300 trainer.max_minutes=null logger.enabled=false
         "paths.data=$data/s128")
milliseconds() { echo $(( $(date +%s%N) / 1000000 )); }
log "one 64 px training, 300 steps"
start=$(milliseconds)
"$py" -m faceregen train "hydra.run.dir=$out/alone" "${train64[@]}" > "$out/alone.log" 2>&1
echo "alone: $(( $(milliseconds) - start )) ms" | tee -a "$out/progress.log"
log "four 64 px trainings at once, 300 steps each"
start=$(milliseconds)
for seed in 0 1 2 3; do
  "$py" -m faceregen train "hydra.run.dir=$out/shared$seed" "${train64[@]}" \
    "trainer.seed=$seed" > "$out/shared$seed.log" 2>&1 &
done
wait
echo "four at once: $(( $(milliseconds) - start )) ms" | tee -a "$out/progress.log"
log "done"
