#!/usr/bin/env bash
# Evaluate STBN with the official sRGB protocol at sigma 10 20 30 40 50 (README command).
#
#   SET8_DIR=/data/Set8 bash test.sh [CKPT] [sRGB_test.py options]
#       Set8 with CKPT (default: $CKPT, else logs/pretrained.pth, the authors' release).
#   bash test.sh [CKPT] [sRGB_test.py options]
#       nothing configured: the held-out frames of the built-in clip, with CKPT or the newest
#       checkpoint that `bash main.sh` wrote to logs/builtin/ (clip: the one it trained on, or
#       $BUILTIN_CLIP).
# The model configuration (--model, --num_resblocks, --num_channels) is read from the checkpoint's
# saved arguments when it has them (the authors' file: the released configuration).
# FINETUNE=N fine-tunes on each test sequence first (the paper's per-video STBN_s; sRGB_test.py --finetune).
set -euo pipefail
cd "$(dirname "$0")"
if [ -n "${SET8_DIR:-}" ] && [ ! -d "$SET8_DIR" ]; then  # before the venv set-up: fail fast
  echo "error: SET8_DIR='$SET8_DIR' is not a folder (expected one sub-folder of frames per sequence)" >&2
  exit 2
fi
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  CKPT="$1"
  shift
fi
check_checkpoint() {
  if [ -d "$CKPT" ]; then
    echo "error: checkpoint '$CKPT' is a folder; pass a checkpoint file (e.g. $CKPT/ckpt_e6.pth)" >&2
    exit 2
  elif [ ! -f "$CKPT" ]; then
    echo "error: checkpoint '$CKPT' does not exist (run bash main.sh first, or pass CKPT)" >&2
    exit 2
  fi
}
# A checkpoint given by name is checked before the venv set-up: a typo must not wait for it.
if [ -n "${SET8_DIR:-}" ]; then
  CKPT="${CKPT:-logs/pretrained.pth}"
fi
if [ -n "${CKPT:-}" ]; then
  check_checkpoint
fi
source scripts/setup_env.sh

if [ -n "${SET8_DIR:-}" ]; then
  DATA=(--test_path "$SET8_DIR")
elif [ -z "${CKPT:-}" ]; then
  CKPT="$("$PY" -c 'from utils.checkpoint import latest_checkpoint; print(latest_checkpoint("logs/builtin") or "")')"
  if [ -z "$CKPT" ]; then
    echo "error: no checkpoint in logs/builtin: run bash main.sh first (or set SET8_DIR and CKPT)" >&2
    exit 2
  fi
fi
check_checkpoint

# --model / --num_resblocks / --num_channels (and the built-in clip a built-in run trained on) as
# saved in the checkpoint; defaults: the released configuration.
read -r -a CONFIG < <("$PY" - "$CKPT" <<'PYEOF'
import sys
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
try:
    saved = load_checkpoint(sys.argv[1]).get("args")
except UserError:
    saved = None  # sRGB_test.py reports the problem with the file itself
saved = saved if isinstance(saved, dict) else {}
print("--model", saved.get("model", "bdc_2_unify"), "--num_resblocks", saved.get("num_resblocks", 5),
      "--num_channels", saved.get("num_channels", 64), saved.get("builtin") or "bikes")
PYEOF
)
TRAINED_CLIP="${CONFIG[6]}"
CONFIG=("${CONFIG[@]:0:6}")
if [ -z "${SET8_DIR:-}" ]; then
  CLIP="${BUILTIN_CLIP:-$TRAINED_CLIP}"
  echo "[test.sh] SET8_DIR is not set: evaluating '$CKPT' on the held-out frames of the built-in clip '$CLIP'" >&2
  DATA=(--builtin "$CLIP")
fi

exec "$PY" sRGB_test.py "${CONFIG[@]}" --noise_sigmas 10 20 30 40 50 --model_file "$CKPT" "${DATA[@]}" \
  ${FINETUNE:+--finetune "$FINETUNE"} "$@"
