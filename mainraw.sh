#!/usr/bin/env bash
# Train the raw-video STBN (run from anywhere: `bash mainraw.sh`). Rerunning resumes; a finished run exits at once.
#
# 1. No dataset configured: a small demo that needs no download. Simulated raw video is made from
#    the built-in clip 'bikes' (inverse sRGB curve, GBRG mosaic, 12-bit with black level 240, the
#    official per-ISO Poisson-Gaussian noise; datasets/simulated_raw.py). A narrow raw STBN
#    (16 channels, 2 residual units, DIS flow on the packed frames' pseudo-RGB) trains on it with
#    the official blind-spot loss on the CPU, then CRVD_test.py prints per-ISO raw PSNR/SSIM of
#    the noisy input vs the denoised output and writes a side-by-side PNG. Logs: logs/builtin_raw.
#    RAW_LOSS=gaussian trains our heteroscedastic Gaussian variant instead (logs/builtin_raw_gaussian).
# 2. CRVD_DIR set (the CRVD root, STBN's or FloRNN's layout), or any arguments given: the authors'
#    mainraw.sh recipe (which, as published, calls a missing script and passes no data folder):
#      CRVD_DIR=/data/CRVD bash mainraw.sh [--pwc_weights network-default.pytorch] [more options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ -n "${CRVD_DIR:-}" ] && [ ! -d "$CRVD_DIR" ]; then
  echo "error: CRVD_DIR='$CRVD_DIR' is not a folder (expected the CRVD root with indoor_raw_gt/ and indoor_raw_noisy/)" >&2
  exit 2
fi
RAW_LOSS="${RAW_LOSS:-mse}"
if [ "$RAW_LOSS" != mse ] && [ "$RAW_LOSS" != gaussian ]; then
  echo "error: RAW_LOSS='$RAW_LOSS': expected mse (the official loss) or gaussian" >&2
  exit 2
fi

source scripts/setup_env.sh

if [ -n "${CRVD_DIR:-}" ] || [ $# -gt 0 ]; then
  data=()
  [ -n "${CRVD_DIR:-}" ] && data+=(--CRVD_dir "$CRVD_DIR")
  # shellcheck disable=SC2086  # TORCHRUN is a command line on purpose
  exec ${TORCHRUN:-"$PY"} CRVD_train.py --model BR_d_c_raw --lr 1e-4 --epochs 200 --batch_size 16 \
    --patch_size 80 --patches_per_epoch 32000 --num_resblocks 5 --print_every 500 --milestones 2000 \
    --gamma 0.1 --raw_loss "$RAW_LOSS" --log_dir logs/iso "${data[@]}" "$@"
fi

# Built-in demo. One intra-op thread: on a small shared CPU, OpenMP threads spin-waiting for each
# other cost far more than they bring.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
EPOCHS=8
LOG_DIR=logs/builtin_raw
[ "$RAW_LOSS" = gaussian ] && LOG_DIR=logs/builtin_raw_gaussian
"$PY" CRVD_train.py --builtin bikes --raw_loss "$RAW_LOSS" --device cpu --num_workers 0 \
  --num_channels 16 --num_resblocks 2 --patch_size 32 --batch_size 4 --patches_per_epoch 400 \
  --epochs "$EPOCHS" --lr 1e-3 --milestones 6 --gamma 0.5 --print_every 25 --log_dir "$LOG_DIR"
"$PY" CRVD_test.py --builtin bikes --model_file "$LOG_DIR/ckpt_e$EPOCHS.pth" --device cpu \
  --output_png "$LOG_DIR/side_by_side.png" --results_json "$LOG_DIR/report.json"
