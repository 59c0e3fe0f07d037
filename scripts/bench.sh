#!/usr/bin/env bash
# Runs the benchmarks. Each prints ratios against a peer measured in the same run, never a timed assertion.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
"$VENV/bin/maturin" develop --release -q --skip-install
echo "== stream overhead (Pinky, zero delay)" >&2
"$VENV/bin/python" benchmarks/stream_overhead.py "$@"
