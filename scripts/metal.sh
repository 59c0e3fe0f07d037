#!/usr/bin/env bash
# Builds the real engine (with Metal on macOS) and runs the real-engine test suite on the small test model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
if ! command -v cmake >/dev/null; then
  for dir in /opt/homebrew/bin /usr/local/bin; do
    if [ -x "$dir/cmake" ]; then export PATH="$dir:$PATH"; break; fi
  done
fi
if ! command -v cmake >/dev/null; then
  echo "metal: cmake is needed to build llama.cpp; install it (macOS: brew install cmake) and run again" >&2
  exit 1
fi
features=()
[ "$(uname -s)" = "Darwin" ] && features=(--features metal)
"$VENV/bin/maturin" develop --release -q --skip-install "${features[@]}"
scripts/test-model.sh >/dev/null
"$VENV/bin/python" -m pytest -m real_engine "$@"
