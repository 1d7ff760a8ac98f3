#!/usr/bin/env bash
# Train STBN (run from anywhere: `bash main.sh`). Rerunning resumes; a finished run exits at once.
#
# 1. No dataset configured: a small demo that needs no download. It trains a narrow STBN
#    (16 channels, 2 residual units, OpenCV DIS flow) on the CPU on the first 80% of both built-in
#    real clips ('bikes', nearly grey, and 'carphone', colourful; RGB order permuted per clip so
#    that colour is learnt as signal), then denoises the held-out last 50 frames of 'bikes' at
#    sigma 30 and prints noisy vs denoised PSNR/SSIM (official metrics) and a side-by-side PNG.
#    Logs: logs/builtin.
# 2. DAVIS_DIR (training frames, one sub-folder per sequence) and optionally SET8_DIR (validation)
#    set, or any arguments given: the authors' main.sh recipe exactly (fixed sigma 30).
#    Add PWC_WEIGHTS=/path/network-default.pytorch to align with PWC-Net as in the paper (without
#    it, DIS flow is used). Extra arguments are passed on and override the recipe, e.g.
#      DAVIS_DIR=/data/DAVIS SET8_DIR=/data/Set8 bash main.sh --log_dir logs/stbn_s30
#    The paper's blind variant trains one model over sigma 5..55: add --noise_ival 5 55.
#    Multi-GPU: TORCHRUN="torchrun --nproc_per_node 4" bash main.sh (batch_size is per process).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# Paths given in the environment are checked first: a typo must not wait for the venv set-up.
for var in DAVIS_DIR SET8_DIR; do
  if [ -n "${!var:-}" ] && [ ! -d "${!var}" ]; then
    echo "error: $var='${!var}' is not a folder (expected one sub-folder of frames per sequence)" >&2
    exit 2
  fi
done
if [ -n "${PWC_WEIGHTS:-}" ] && [ ! -f "$PWC_WEIGHTS" ]; then
  echo "error: PWC_WEIGHTS='$PWC_WEIGHTS' is not a file (the authors' network-default.pytorch)" >&2
  exit 2
fi

source scripts/setup_env.sh

if [ -n "${DAVIS_DIR:-}" ] || [ $# -gt 0 ]; then
  data=()
  [ -n "${DAVIS_DIR:-}" ] && data+=(--trainset_dir "$DAVIS_DIR")
  [ -n "${SET8_DIR:-}" ] && data+=(--valset_dir "$SET8_DIR")
  [ -n "${PWC_WEIGHTS:-}" ] && data+=(--pwc_weights "$PWC_WEIGHTS")
  # shellcheck disable=SC2086  # TORCHRUN is a command line on purpose
  exec ${TORCHRUN:-"$PY"} sRGB_train_bsn.py --model bdc_2_unify --lr 3e-4 --epochs 10 --batch_size 4 \
    --patch_size 96 --patches_per_epoch 32000 --num_resblocks 5 --print_every 1000 --train_length 8 \
    --noise_ival 30 30 --val_noiseL 30 --milestones 2 4 6 8 --gamma 0.5 --log_dir logs/stbn \
    "${data[@]}" "$@"
fi

if [ -n "${SET8_DIR:-}${PWC_WEIGHTS:-}" ]; then
  echo "warning: SET8_DIR / PWC_WEIGHTS are used only with DAVIS_DIR; running the built-in demo" >&2
fi
# Built-in demo. One intra-op thread: on a small shared CPU, OpenMP threads spin-waiting for each
# other cost far more than they bring.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
EPOCHS=6
LOG_DIR=logs/builtin
"$PY" sRGB_train_bsn.py --builtin bikes,carphone --colour_augment --device cpu --num_workers 0 \
  --num_channels 16 --num_resblocks 2 --patch_size 64 --train_length 6 --batch_size 4 \
  --patches_per_epoch 160 --epochs "$EPOCHS" --lr 1e-3 --milestones 4 5 --gamma 0.5 \
  --noise_ival 30 30 --val_noiseL 30 --val_max_frames 6 --print_every 20 --log_dir "$LOG_DIR"
"$PY" -m engine.commands.report_builtin --model_file "$LOG_DIR/ckpt_e$EPOCHS.pth" --builtin bikes --sigma 30 \
  --device cpu --output_png "$LOG_DIR/side_by_side.png" --results_json "$LOG_DIR/report.json"
