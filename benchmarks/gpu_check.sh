#!/usr/bin/env bash
# Every GPU-only check of this repository in one run (about 8 minutes on one GPU), results in
# benchmarks/results/gpu_check.txt. Any failing step stops the script with "FAILED: <step>" and
# exit 1.
#
#   bash benchmarks/gpu_check.sh               # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_check.sh --dry [OUT]   # the same steps, tiny, on the CPU (CI keeps it working)
#
# PY=/path/to/python uses that interpreter (one with torch already installed) instead of .venv.
#
# Steps: the GPU-marked tests (CuPy cost volume and splatting vs PyTorch, model CUDA vs CPU), the
# kernels' self-check (which path, CuPy or PyTorch, each kernel takes per dtype), model
# speed at 960x540 in float32 and bf16, the bf16 PSNR change, training-step speed, 20 steps of --amp
# training, a 2-process NCCL DDP run when two GPUs exist, and the peak GPU memory of an 85-frame
# 960x540 (Set8-sized) sequence on the one-pass and bounded paths.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
OUT=benchmarks/results/gpu_check.txt
if [ "${1:-}" = "--dry" ]; then
  DRY=1
  OUT="${2:-$(mktemp -t gpu_check_dry.XXXXXX)}"
elif [ -n "${1:-}" ]; then
  echo "error: unknown argument '$1' (expected --dry [OUT])" >&2
  exit 2
fi
if [ -z "${PY:-}" ]; then
  source scripts/setup_env.sh
fi
if [ "$DRY" = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device here; run 'bash benchmarks/gpu_check.sh --dry' to check the script on the CPU" >&2
  exit 2
fi
mkdir -p "$(dirname "$OUT")"
WORK="$(mktemp -d -t gpu_check.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
: > "$OUT"
GPUS=0
[ "$DRY" = 0 ] && GPUS="$("$PY" -c "import torch; print(torch.cuda.device_count())")"

note() { echo "$*" | tee -a "$OUT"; }
step() {
  local name="$1"; shift
  note ""
  note "=== $name"
  note "\$ $*"
  local start=$SECONDS
  if ! "$@" 2>&1 | tee -a "$OUT"; then
    note "FAILED: $name"
    exit 1
  fi
  note "--- $name: ok ($((SECONDS - start)) s)"
}

note "gpu_check $( [ "$DRY" = 1 ] && echo '(dry run on the CPU)' ) $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" | tee -a "$OUT"

if [ "$DRY" = 1 ]; then
  DEV=cpu
  SPEED=(--configs small --sizes 64x64 --frames 2 --repeats 1)
  TRAIN_SPEED=(--configs small --batch 1 --frames 2 --size 32 --repeats 1)
  PRECISION=(--num_channels 8 --frames 2)
  AMP_TRAIN=(--num_channels 8 --num_resblocks 2 --batch_size 1 --patches_per_epoch 2 --patch_size 32
             --train_length 3 --val_max_frames 2 --num_workers 0)
  MEMORY=(--height 32 --width 48 --num_channels 8 --frames 3)
else
  DEV=cuda
  SPEED=(--configs released --sizes 960x540 --frames 8 --repeats 3)
  TRAIN_SPEED=(--configs released,small --batch 4 --frames 8 --size 96 --repeats 5)
  PRECISION=(--frames 8)
  AMP_TRAIN=(--batch_size 4 --patches_per_epoch 80 --patch_size 96 --train_length 8 --val_max_frames 8
             --num_workers 2)
  MEMORY=(--frames 85)
fi

step "GPU-marked tests" "$PY" -m pytest -q -rs -m gpu tests
step "CuPy kernel self-check (which path each kernel uses)" "$PY" -m benchmarks.kernel_paths --device "$DEV"
step "model speed (float32 and bf16)" "$PY" -m benchmarks.model_speed --device "$DEV" "${SPEED[@]}"
if "$PY" -c "import sys, torch; from engine.train.step import amp_supported; sys.exit(0 if amp_supported(torch.device('$DEV')) else 1)"; then
  step "bf16 PSNR change" "$PY" -m benchmarks.precision --device "$DEV" "${PRECISION[@]}"
else
  note ""; note "=== bf16 PSNR change: skipped (bf16 is not native on this $DEV)"
fi
step "training-step speed" "$PY" -m benchmarks.train_speed --device "$DEV" "${TRAIN_SPEED[@]}"
step "--amp training (20 steps on the GPU)" "$PY" sRGB_train_bsn.py --builtin bikes --amp --device "$DEV" --flow dis \
  --epochs 1 --log_dir "$WORK/amp" "${AMP_TRAIN[@]}"
step "--amp training losses are finite" "$PY" -c "
import json, math, sys
rows = json.load(open('$WORK/amp/metrics.json'))
print(rows)
sys.exit(0 if rows and all(math.isfinite(r['loss']) and r['nonfinite_steps'] == 0 for r in rows) else 1)"
if [ "$GPUS" -ge 2 ]; then
  step "2-process NCCL DDP training" "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
    sRGB_train_bsn.py --builtin bikes --device cuda --flow dis --epochs 1 --log_dir "$WORK/ddp" "${AMP_TRAIN[@]}"
else
  note ""; note "=== 2-process NCCL DDP training: skipped ($GPUS GPU(s) here; needs 2)"
fi
step "peak memory, one pass and bounded" "$PY" -m benchmarks.memory_peak --device "$DEV" --paths full bounded \
  "${MEMORY[@]}"
note ""
note "all GPU checks passed; results in $OUT"
