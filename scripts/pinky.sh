#!/usr/bin/env bash
# The brainteaser harness and the library and CLI tests on Pinky, the stub engine: no model weights, seconds.
# Extra arguments go to pytest. RG_SKIP_BUILD=1 skips the rebuild (scripts/test.sh has just built).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
[ "${RG_SKIP_BUILD:-}" = 1 ] || "$VENV/bin/maturin" develop --release -q --skip-install
echo "== brainteaser: Pinky fixtures" >&2
"$VENV/bin/ogenius" teaser fixtures --engine pinky
echo "== pytest -m pinky (library, CLI, TUI, server, Pinky fixtures)" >&2
"$VENV/bin/python" -m pytest -m pinky "$@"
