#!/usr/bin/env bash
# The brainteaser harness and the real-engine tests on llama.cpp: Metal on macOS; CUDA with --cuda (needs nvcc).
# Usage: scripts/metal.sh [--cuda] [pytest args]. RG_SKIP_BUILD=1 skips the rebuild (scripts/test.sh has just
# built). Fixtures whose model is not here are skipped with the reason (offline: no download is tried).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
features=()
if [ "${1:-}" = "--cuda" ]; then
  shift
  if ! command -v nvcc >/dev/null; then
    echo "metal: --cuda needs the CUDA toolkit's nvcc on PATH (e.g. /usr/local/cuda/bin)" >&2
    exit 1
  fi
  features=(--features cuda)
elif [ "$(uname -s)" = "Darwin" ]; then
  features=(--features metal)
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
  "$VENV/bin/maturin" develop --release -q --skip-install "${features[@]}"
fi
scripts/test-model.sh >/dev/null
echo "== brainteaser: model fixtures (offline)" >&2
"$VENV/bin/ogenius" teaser fixtures --engine brain --offline
echo "== pytest -m real_engine (Brain on SmolLM2-135M, model fixtures)" >&2
"$VENV/bin/python" -m pytest -m real_engine "$@"
