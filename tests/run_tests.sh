#!/usr/bin/env bash
# README test command. Sets up .venv if needed, then runs pytest on tests/.
#   bash tests/run_tests.sh            the fast loop: every test but those marked `slow`
#   bash tests/run_tests.sh --all      every test (what CI runs)
# Any further arguments go to pytest (e.g. tests/models -k blind_spot, --durations=15).
set -euo pipefail
cd "$(dirname "$0")/.."
select=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
  select=()
  shift
fi
source scripts/setup_env.sh
exec "$PY" -m pytest -q tests "${select[@]}" "$@"
