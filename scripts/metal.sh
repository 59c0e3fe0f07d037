#!/usr/bin/env bash
# The brainteaser harness and the real-engine tests on llama.cpp: Metal on macOS; CUDA with --cuda (needs nvcc).
# Usage: scripts/metal.sh [--cuda] [pytest args]. RG_SKIP_BUILD=1 skips the rebuild (scripts/test.sh has just
# built). Fixtures whose model is not here are skipped with the reason (tests run offline: no download is tried).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
if [ "${1:-}" = "--cuda" ]; then
  shift
  if ! command -v nvcc >/dev/null; then
    echo "metal: --cuda needs the CUDA toolkit's nvcc on PATH (e.g. /usr/local/cuda/bin)" >&2
    exit 1
  fi
  NATIVE_FEATURES=(--features cuda)  # instead of env.sh's choice (Metal on macOS, CPU elsewhere)
fi
if [ "${RG_SKIP_BUILD:-}" != 1 ]; then
  if ! command -v cmake >/dev/null; then
    for dir in /opt/homebrew/bin /usr/local/bin; do
      if [ -x "$dir/cmake" ]; then export PATH="$dir:$PATH"; break; fi
    done
  fi
  if ! command -v cmake >/dev/null; then
    echo "metal: cmake is needed to build llama.cpp; install it (macOS: brew install cmake) and run again" >&2
    exit 1
  fi
  build_native
fi
scripts/test-model.sh >/dev/null
# The model fixtures are pytest items (see pinky.sh); the summary says why one was skipped (its model is not here).
echo "== pytest -m real_engine (Brain on SmolLM2-135M, model fixtures)" >&2
"$VENV/bin/python" -m pytest -m real_engine "$@"
