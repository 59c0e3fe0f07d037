#!/usr/bin/env bash
# Library and CLI tests on Pinky, the stub engine: no model weights, a few seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
"$VENV/bin/maturin" develop --release -q --skip-install
"$VENV/bin/python" -m pytest -m pinky "$@"
