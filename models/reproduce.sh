#!/usr/bin/env bash
# Rebuild a shipped model from the repository, with the commands its model card records, in order.
#
#   bash models/reproduce.sh NAME            # NAME: cifar10-rvq, cifar10-byte, cifar10-vq, photo-rvq-v1, photo-rvq, photo-hp-v1, photo-hp-v2, photo-hp, photo-cc, photo-cc128, photo-cb128, photo-cbr128, small-hp, small-cb, small-cb2, small-cb3, small-cbr, photo-s8-v1, photo-s8
#   OUT=/tmp/rebuilt bash models/reproduce.sh photo-rvq   # write elsewhere, to compare with models/
#
# Data: $VQZIP_DATA (default ../shared/data) holds cifar10/ and photos/cbsd68/; CIFAR-10 is otherwise
# downloaded. Training on CPU is not bit-identical across machines or thread counts, so a rebuilt
# model is a close sibling of the shipped one (its own model id), not a byte-for-byte copy. Where a
# shipped run was interrupted and resumed with another epoch count, the card's training_notes say
# so; this script runs the uninterrupted schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${VQZIP_DATA:-../shared/data}"
PHOTOS="$DATA/photos/cbsd68"
OUT="${OUT:-models}"
RUNS="${RUNS:-$HOME/.cache/vqzip/runs}"  # training checkpoints, outside the work tree
VQZIP="${VQZIP:-vqzip}"
mkdir -p "$OUT"

cifar10-rvq() {
  $VQZIP train cifar10 --data "$DATA" --quantizer rvq --out "$OUT/cifar10-rvq" --epochs 5 --batch-size 128 --lr 2e-3 \
    --channels 48 --latent-dim 64 --levels 10 --codebook-size 256 --seed 0 --resume
  $VQZIP train-prior "$OUT/cifar10-rvq" --data "$DATA" --epochs 2 --resume
}

cifar10-byte() {
  $VQZIP train cifar10 --data "$DATA" --quantizer byte --out "$OUT/cifar10-byte" --epochs 2 --lr 2e-3 \
    --channels 48 --latent-dim 64 --codebook-size 256 --seed 0 --resume
}

cifar10-vq() {
  $VQZIP train cifar10 --data "$DATA" --quantizer vq --out "$OUT/cifar10-vq" --epochs 2 --lr 2e-3 \
    --channels 48 --latent-dim 64 --codebook-size 256 --seed 0 --resume
}

photo-rvq-v1() {  # 8 levels trained, the first 3 kept (the rest added under 0.1 dB each)
  $VQZIP train "$PHOTOS" --out "$OUT/photo-rvq-v1-8" --downsamples 3 --channels 40 --latent-dim 64 --levels 8 \
    --codebook-size 256 --crop 64 --crops 12000 --epochs 3 --batch-size 32 --lr 5e-4 --seed 0 --resume
  python benchmarks/export_rvq_prefix.py "$OUT/photo-rvq-v1-8.ckpt" 3 "$OUT/photo-rvq-v1" \
    --photos "$PHOTOS" --crop 64 --crops 12000 --seed 0 --card "$OUT/photo-rvq-v1-8.json"
  $VQZIP train-prior "$OUT/photo-rvq-v1" --dataset "$PHOTOS" --crop 256 --crops 2000 --epochs 4 --batch-size 16
}

photo-rvq() {  # photo-rvq-v1 trained further, with 3 more RVQ levels (new crops: --seed 1)
  [ -f "$OUT/photo-rvq-v1.safetensors" ] || photo-rvq-v1
  $VQZIP train "$PHOTOS" --out "$OUT/photo-rvq" --init "$OUT/photo-rvq-v1" --downsamples 3 --channels 40 \
    --latent-dim 64 --levels 6 --codebook-size 256 --crop 64 --crops 30000 --epochs 8 --batch-size 32 --lr 5e-4 \
    --seed 1 --resume
  $VQZIP train-prior "$OUT/photo-rvq" --dataset "$PHOTOS" --crop 256 --crops 4000 --epochs 4 --batch-size 16
}

photo-hp-v1() {  # the rate-distortion photo codec's first export; checkpoints in $RUNS/photo-hp-v1
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --arch hyperprior --out "$OUT/photo-hp-v1" --steps 5476 \
    --channels 96 --latent 160 --hyper 96 --batch-size 8 --crop 256 --lr 3e-4 --seed 0 \
    --run "$RUNS/photo-hp-v1" --test "$DATA/kodak"
}

photo-hp-v2() {  # photo-hp-v1 trained further on new crops (--seed 1): to step 8,878 at lr 3e-4, then to 17,821 at 1e-4
  [ -f "$OUT/photo-hp-v1.safetensors" ] || photo-hp-v1
  run="$RUNS/photo-hp"
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --arch hyperprior --out "$OUT/photo-hp-v2" --init "$OUT/photo-hp-v1" \
    --steps 8878 --lr 3e-4 --seed 1 --run "$run"
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --arch hyperprior --out "$OUT/photo-hp-v2" --init "$OUT/photo-hp-v1" \
    --steps 17821 --lr 1e-4 --seed 1 --run "$run" --test "$DATA/kodak"
}

photo-hp() {  # the same run continued: to step 26,000 at lr 1e-4, then to STEPS at 3e-5 (the card says how many)
  [ -f "$OUT/photo-hp-v2.safetensors" ] || photo-hp-v2
  run="$RUNS/photo-hp"
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --arch hyperprior --out "$OUT/photo-hp" --init "$OUT/photo-hp-v1" \
    --steps 26000 --lr 1e-4 --seed 1 --run "$run"
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --arch hyperprior --out "$OUT/photo-hp" --init "$OUT/photo-hp-v1" \
    --steps "${STEPS:-30000}" --lr 3e-5 --seed 1 --run "$run" --test "$DATA/kodak"
}

photo-cc() {  # photo-hp with a ninth, lower quality (26 dB) and its latent in 5 channel-conditional slices, trained on
  # jointly: to step 3,623 at lr 1e-4, then to STEPS at 3e-5 (the card says how many)
  [ -f "$OUT/photo-hp.safetensors" ] || photo-hp
  run="$RUNS/photo-cc"
  cc=(--arch hyperprior --out "$OUT/photo-cc" --init "$OUT/photo-hp" --slices 5 --context 128 --seed 4 --run "$run"
      --lambdas 0.0008,0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932,0.18)
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${cc[@]}" --steps 3623 --lr 1e-4 --no-evaluate
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${cc[@]}" --steps "${STEPS:-8000}" --lr 3e-5 --test "$DATA/kodak"
}

photo-cc128() {  # photo-cc widened from 96 to 128 channels (the new ones start silent), trained on: to step
  # 3,047 at lr 1e-4, then to STEPS at 3e-5 (the card says how many)
  [ -f "$OUT/photo-cc.safetensors" ] || photo-cc
  run="$RUNS/photo-cc128"
  wide=(--arch hyperprior --out "$OUT/photo-cc128" --init "$OUT/photo-cc" --channels 128 --slices 5 --context 128 --seed 5
        --run "$run" --lambdas 0.0008,0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932,0.18)
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${wide[@]}" --steps 3047 --lr 1e-4 --no-evaluate
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${wide[@]}" --steps "${STEPS:-6000}" --lr 3e-5 --test "$DATA/kodak"
}

photo-cb128() {  # photo-cc128 with a checkerboard context (its networks start at zero), trained on: to step
  # 3,046 at lr 1e-4, then to STEPS at 3e-5 (the card says how many)
  [ -f "$OUT/photo-cc128.safetensors" ] || photo-cc128
  run="$RUNS/photo-cb128"
  cb=(--arch hyperprior --out "$OUT/photo-cb128" --init "$OUT/photo-cc128" --channels 128 --slices 5 --context 128
      --checkerboard --seed 6 --compile --run "$run" --lambdas 0.0008,0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932,0.18)
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${cb[@]}" --steps 3046 --lr 1e-4 --no-evaluate
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${cb[@]}" --steps "${STEPS:-6000}" --lr 3e-5 --test "$DATA/kodak"
}

photo-cbr128() {  # photo-cb128 with one residual block in each transform (the blocks start as the identity),
  # trained on: to step 2,508 at lr 1e-4, then to STEPS at 3e-5 (the card says how many)
  [ -f "$OUT/photo-cb128.safetensors" ] || photo-cb128
  run="$RUNS/photo-cbr128"
  cbr=(--arch hyperprior --out "$OUT/photo-cbr128" --init "$OUT/photo-cb128" --channels 128 --slices 5 --context 128
       --checkerboard --residual 1 --seed 7 --compile --run "$run"
       --lambdas 0.0008,0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932,0.18)
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${cbr[@]}" --steps 2508 --lr 1e-4 --no-evaluate
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${cbr[@]}" --steps "${STEPS:-6000}" --lr 3e-5 --test "$DATA/kodak"
}

small-hp() {  # the small-image codec, from scratch: CIFAR-10 train + thumbnails of the training photos (in training)
  $VQZIP train cifar10 "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --data "$DATA" --arch hyperprior --downsamples 3 \
    --thumbnails 32,64 --crops 20000 --crop 32 --batch-size 64 --channels 64 --latent 128 --hyper 64 \
    --lambdas 0.0025,0.005,0.01,0.02,0.04,0.08,0.16,0.32 --lr 3e-4 --seed 0 --steps 16366 --out "$OUT/small-hp" \
    --run "$RUNS/small-hp" --test cifar10
}

SMALL_LAMBDAS=0.0025,0.005,0.01,0.02,0.04,0.08,0.16,0.32
small() {  # small CHANNELS LAMBDAS ARGS...: the small-image codec's training command (CIFAR-10 train and
  # thumbnails of the photos, 32x32 crops, entropy model per 32x32 block), the rest of its arguments appended
  local channels="$1" lambdas="$2"
  shift 2
  $VQZIP train cifar10 "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" --data "$DATA" --arch hyperprior --downsamples 3 \
    --thumbnails 32,64 --crops 20000 --crop 32 --batch-size 64 --channels "$channels" --latent 128 --hyper 64 \
    --lambdas "$lambdas" --seed 0 --slices 4 --context 64 --checkerboard --prior-block 4 --compile "$@"
}

small-cb() {  # small-hp with 4 channel-conditional slices and a checkerboard context (they start at zero
  # corrections), trained on: to step 43,744 at lr 3e-4, then to STEPS at 1e-4 (the card says how many); its
  # entropy model runs per 32x32 block, as each training crop was one (--prior-block 4: format version 6)
  [ -f "$OUT/small-hp.safetensors" ] || small-hp
  cb=(--out "$OUT/small-cb" --run "$RUNS/small-cb" --init "$OUT/small-hp")
  small 64 "$SMALL_LAMBDAS" "${cb[@]}" --steps 43744 --lr 3e-4 --no-evaluate
  small 64 "$SMALL_LAMBDAS" "${cb[@]}" --steps "${STEPS:-59679}" --lr 1e-4 --test cifar10
}

small-cb2() {  # small-cb's run continued at lr 3e-5 to step 66,000 (it resumes small-cb's checkpoint)
  [ -f "$RUNS/small-cb/checkpoint.pt" ] || small-cb
  small 64 "$SMALL_LAMBDAS" --out "$OUT/small-cb2" --run "$RUNS/small-cb" --init small-hp --steps 66000 --lr 3e-5 \
    --test cifar10
}

small-cb3() {  # small-cb2 widened to 96 channels (the new ones start silent), trained on: to step 7,451 at lr 1e-4,
  # then to 10,230 at 3e-5
  [ -f "$OUT/small-cb2.safetensors" ] || small-cb2
  cb3=(--out "$OUT/small-cb3" --run "$RUNS/small-cb3" --init "$OUT/small-cb2")
  small 96 "$SMALL_LAMBDAS" "${cb3[@]}" --steps 7451 --lr 1e-4 --no-evaluate
  small 96 "$SMALL_LAMBDAS" "${cb3[@]}" --steps 10230 --lr 3e-5 --test cifar10
}

small-cbr() {  # small-cb3's run on at 3e-5 to step 20,012; a 9th quality (lambda 0.64), 7,391 steps; a 10th
  # (1.28), 4,095 steps; then one residual block in each transform (identity at first): to step 9,161 at 1e-4,
  # then to 16,000 at 3e-5 (each stage a new run from the one before, at lr 3e-5 unless said)
  [ -f "$RUNS/small-cb3/checkpoint.pt" ] || small-cb3
  small 96 "$SMALL_LAMBDAS" --out "$OUT/small-cb3-step20012" --run "$RUNS/small-cb3" --init "$OUT/small-cb2" \
    --steps 20012 --lr 3e-5 --no-evaluate
  small 96 "$SMALL_LAMBDAS,0.64" --out "$OUT/small-q9" --run "$RUNS/small-q9" --init "$OUT/small-cb3-step20012" \
    --steps 7391 --lr 3e-5 --no-evaluate
  small 96 "$SMALL_LAMBDAS,0.64,1.28" --out "$OUT/small-q10" --run "$RUNS/small-q10" --init "$OUT/small-q9" \
    --steps 4095 --lr 3e-5 --no-evaluate
  cbr=(--out "$OUT/small-cbr" --run "$RUNS/small-cbr" --init "$OUT/small-q10" --residual 1)
  small 96 "$SMALL_LAMBDAS,0.64,1.28" "${cbr[@]}" --steps 9161 --lr 1e-4 --no-evaluate
  small 96 "$SMALL_LAMBDAS,0.64,1.28" "${cbr[@]}" --steps 16000 --lr 3e-5 --test cifar10
}

photo-s8-v1() {  # small-cbr trained on as a photo codec: 256x256 crops of the photos, its top 8 lambdas, the entropy
  # model on the whole grid (no blocks), mean-shifted rounding; to step 1,122 at lr 1e-4, then to 1,474 at 3e-5
  [ -f "$OUT/small-cbr.safetensors" ] || small-cbr
  s8=(--arch hyperprior --out "$OUT/photo-s8-v1" --init "$OUT/small-cbr" --downsamples 3 --channels 96 --latent 128
      --hyper 64 --lambdas 0.01,0.02,0.04,0.08,0.16,0.32,0.64,1.28 --slices 4 --context 64 --checkerboard --residual 1
      --prior-block 0 --crop 256 --batch-size 8 --seed 11 --compile --mean-shift --run "$RUNS/photo-s8")
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${s8[@]}" --steps 1122 --lr 1e-4 --no-evaluate
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${s8[@]}" --steps 1474 --lr 3e-5 \
    --test "$DATA/kodak"  # the shipped card's Kodak section is a vqzip bench run's (benchmarks/card_from_bench.py)
}

photo-s8() {  # photo-s8-v1 trained on (a new run, seed 12, its first 500 steps warm-up): to step 6,578 at lr 1e-4, then
  # to STEPS at 3e-5 (the card says how many); bfloat16 where the CPU has it natively
  [ -f "$OUT/photo-s8-v1.safetensors" ] || photo-s8-v1
  s8=(--arch hyperprior --out "$OUT/photo-s8" --init "$OUT/photo-s8-v1" --downsamples 3 --channels 96 --latent 128
      --hyper 64 --lambdas 0.01,0.02,0.04,0.08,0.16,0.32,0.64,1.28 --slices 4 --context 64 --checkerboard --residual 1
      --prior-block 0 --crop 256 --batch-size 8 --seed 12 --compile --mean-shift --run "$RUNS/photo-s8b")
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${s8[@]}" --steps 6578 --lr 1e-4 --no-evaluate
  $VQZIP train "$DATA/photos/cbsd432" "$DATA/photos/cbsd68" "${s8[@]}" --steps "${STEPS:-7989}" --lr 3e-5 \
    --no-evaluate  # the shipped card's Kodak section is a vqzip bench run's (benchmarks/card_from_bench.py)
}

case "${1:-}" in
  cifar10-rvq|cifar10-byte|cifar10-vq|photo-rvq-v1|photo-rvq|photo-hp-v1|photo-hp-v2|photo-hp|photo-cc|photo-cc128|photo-cb128|photo-cbr128|small-hp|small-cb|small-cb2|small-cb3|small-cbr|photo-s8-v1|photo-s8) "$1" ;;
  *) echo "usage: bash models/reproduce.sh {cifar10-rvq|cifar10-byte|cifar10-vq|photo-rvq-v1|photo-rvq|photo-hp-v1|photo-hp-v2|photo-hp|photo-cc|photo-cc128|photo-cb128|photo-cbr128|small-hp|small-cb|small-cb2|small-cb3|small-cbr|photo-s8-v1|photo-s8}" >&2; exit 2 ;;
esac
