#!/usr/bin/env bash
# The default model's GPU recipe: train the default configuration wider and longer on the same
# offline data (the three built-in videos and the photograph clips, colour and saturation
# augmentation, blind sigma 5-55, DIS flow) within a time limit, export the weights, and benchmark
# them against the classical rows on
# held-out frames of every built-in clip at sigma 10/25/50. Everything lands in OUT:
#   OUT/train/            training log_dir (checkpoints, metrics, curves; rerunning resumes)
#   OUT/stbn_blind_gpu.pth the exported weights (a candidate successor of weights/stbn_blind_small.pth)
#   OUT/quality.json/.png  benchmark rows of that model as denoise.py runs it, with NLM, TV 3-D, BM3D
#
#   bash benchmarks/gpu_recipe.sh OUT [--minutes M]   # on a machine with an NVIDIA GPU (default 8 min)
#   bash benchmarks/gpu_recipe.sh OUT --dry            # the same steps, tiny, on the CPU (the tests run it)
#
# PY=/path/to/python uses that interpreter instead of .venv. Run it right after
# benchmarks/gpu_check.sh on a lent GPU: `bash benchmarks/gpu_check.sh && bash benchmarks/gpu_recipe.sh out`.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-}"
if [ -z "$OUT" ] || [ "${OUT#--}" != "$OUT" ]; then
  echo "error: usage: bash benchmarks/gpu_recipe.sh OUT [--minutes M] [--dry]" >&2
  exit 2
fi
shift
MINUTES=8
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry) DRY=1; shift ;;
    --minutes)
      if ! [[ "${2:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
        echo "error: --minutes needs a number of minutes, got '${2:-}'" >&2
        exit 2
      fi
      MINUTES="$2"; shift 2 ;;
    *) echo "error: unknown argument '$1' (expected --minutes M or --dry)" >&2; exit 2 ;;
  esac
done
if [ -z "${PY:-}" ]; then
  source scripts/setup_env.sh
fi
if [ "$DRY" = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device here; run 'bash benchmarks/gpu_recipe.sh OUT --dry' to check the script on the CPU" >&2
  exit 2
fi
mkdir -p "$OUT"

if [ "$DRY" = 1 ]; then
  TRAIN=(--builtin carphone --device cpu --num_channels 8 --num_resblocks 2 --patch_size 32 --train_length 3
         --batch_size 1 --patches_per_epoch 2 --epochs 1 --val_max_frames 2 --num_workers 0)
  BENCH=(--clips carphone --sigmas 25 --crop 96 96 --max_frames 4 --tune_frames 2 --no_bm3d --no_install
         --device cpu)
  ROWS=(noisy NLM "sigma + prior scale auto")  # the dry run skips the 160 fine-tuning steps of denoise.py's row
else
  # Wider (32 channels, 4 units; the CPU model is 20 and 3) and longer, on the paper's crop sizes.
  TRAIN=(--builtin bikes,carphone,bunny,stills --device cuda --num_channels 32 --num_resblocks 4 --patch_size 96
         --train_length 8 --batch_size 8 --patches_per_epoch 4000 --epochs 1000 --val_max_frames 8 --num_workers 4
         --time_budget "$MINUTES")
  BENCH=(--clips carphone bikes bunny --sigmas 10 25 50 --device cuda)
  ROWS=(denoise.py NLM "TV 3-D" BM3D noisy)
fi
"$PY" sRGB_train_bsn.py "${TRAIN[@]}" --colour_augment --augment --saturation_augment 3 --flow dis \
  --noise_ival 5 55 --val_noiseL 25 --lr 1e-3 --milestones 100000 --print_every 50 --log_dir "$OUT/train"
CKPT="$("$PY" -c "from utils.checkpoint import latest_checkpoint; print(latest_checkpoint('$OUT/train') or '')")"
if [ -z "$CKPT" ]; then
  echo "error: the training wrote no checkpoint in $OUT/train" >&2
  exit 1
fi
"$PY" -m engine.commands.export_denoiser "$CKPT" -o "$OUT/stbn_blind_gpu.pth"
"$PY" -m benchmarks.quality "${BENCH[@]}" --skip_stbn --default_model --model_file "$OUT/stbn_blind_gpu.pth" \
  --only "${ROWS[@]}" --out "$OUT"
echo "weights: $OUT/stbn_blind_gpu.pth (from $CKPT); benchmark: $OUT/quality.json"
