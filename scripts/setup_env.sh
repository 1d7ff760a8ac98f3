#!/usr/bin/env bash
# Create (once) and reuse the project virtual environment in .venv.
# Idempotent: a second call only checks a stamp file and returns.
# Usage: source scripts/setup_env.sh   (sets $PY to the venv's python)
# STBN_PYTHON=/path/to/python uses that interpreter instead and creates nothing (the test suite
# runs the shell scripts with its own interpreter, so it never builds a venv in the checkout).
set -euo pipefail
if [ -n "${STBN_PYTHON:-}" ]; then
  PY="$STBN_PYTHON"
  export PY
  return 0 2>/dev/null || exit 0
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-gpu.txt" "$ROOT/requirements-test.txt" | sha1sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup] creating virtual environment in .venv (first run only)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || true
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # GPU machine: CUDA build of torch plus CuPy for the cost-volume / splatting kernels.
    "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" >&2
    "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements-gpu.txt" >&2 || echo "[setup] CuPy unavailable: PyTorch kernels will be used" >&2
  else
    # CPU machine: never pull a multi-GB CUDA build. torch==2.13.0 comes from the local wheel
    # cache when present, else from the official CPU index.
    "$VENV/bin/python" -m pip install -q torch==2.13.0 >&2 \
      || "$VENV/bin/python" -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu >&2
    "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" >&2
  fi
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements-test.txt" >&2
  echo "$want" > "$STAMP"
fi
PY="$VENV/bin/python"
export PY
