#!/usr/bin/env bash
# README command 2: set up .venv if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec "$PY" -m pytest -q tests "$@"
