#!/usr/bin/env bash
# Train the raw-video STBN (run from anywhere: `bash mainraw.sh`). Rerunning resumes; a finished run exits at once.
#
# 1. No dataset configured: a small demo that needs no download. Simulated raw video is made from
#    the built-in clip 'bikes' (inverse sRGB curve, GBRG mosaic, 12-bit with black level 240, the
#    official per-ISO Poisson-Gaussian noise; datasets/simulated_raw.py). A narrow raw STBN
#    (16 channels, 2 residual units, DIS flow on the packed frames' pseudo-RGB) trains on it on the
#    CPU twice: with the official blind-spot MSE (CRVD_train.py's default; logs/builtin_raw) and
#    with our heteroscedastic Gaussian likelihood (logs/builtin_raw_gaussian). CRVD_test.py scores
#    each (per-ISO raw PSNR/SSIM, a side-by-side PNG), and a last table compares them per ISO with
#    the noisy input. RAW_LOSS=mse or RAW_LOSS=gaussian trains only that recipe.
# 2. CRVD_DIR set (the CRVD root, STBN's or FloRNN's layout), or any arguments given: the authors'
#    mainraw.sh recipe (which, as published, calls a missing script and passes no data folder):
#      CRVD_DIR=/data/CRVD bash mainraw.sh [--pwc_weights network-default.pytorch] [more options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ -n "${CRVD_DIR:-}" ] && [ ! -d "$CRVD_DIR" ]; then
  echo "error: CRVD_DIR='$CRVD_DIR' is not a folder (expected the CRVD root with indoor_raw_gt/ and indoor_raw_noisy/)" >&2
  exit 2
fi
RAW_LOSS_GIVEN="${RAW_LOSS:-}"
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

# Built-in demo: both recipes on the same data and budget, then one table per ISO. One intra-op
# thread: on a small shared CPU, OpenMP threads spin-waiting for each other cost far more than they
# bring. RAW_LOSS=mse or RAW_LOSS=gaussian trains only that recipe.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
EPOCHS=4
RECIPES=(mse gaussian)
[ -n "${RAW_LOSS_GIVEN:-}" ] && RECIPES=("$RAW_LOSS")
REPORTS=()
for loss in "${RECIPES[@]}"; do
  LOG_DIR=logs/builtin_raw
  LABEL="official MSE (default)"
  if [ "$loss" = gaussian ]; then
    LOG_DIR=logs/builtin_raw_gaussian
    LABEL="--raw_loss gaussian"
  fi
  echo "[mainraw.sh] training the raw STBN with the $LABEL recipe ($LOG_DIR)" >&2
  "$PY" CRVD_train.py --builtin bikes --raw_loss "$loss" --device cpu --num_workers 0 \
    --num_channels 16 --num_resblocks 2 --patch_size 32 --batch_size 4 --patches_per_epoch 400 \
    --epochs "$EPOCHS" --lr 1e-3 --milestones 3 --gamma 0.5 --print_every 25 --log_dir "$LOG_DIR"
  "$PY" CRVD_test.py --builtin bikes --model_file "$LOG_DIR/ckpt_e$EPOCHS.pth" --device cpu \
    --output_png "$LOG_DIR/side_by_side.png" --results_json "$LOG_DIR/report.json"
  REPORTS+=(--report "$LABEL" "$LOG_DIR/report.json")
done
"$PY" -m engine.commands.report_raw "${REPORTS[@]}"
