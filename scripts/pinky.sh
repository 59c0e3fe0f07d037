#!/usr/bin/env bash
# The brainteaser harness and the library and CLI tests on Pinky, the stub engine: no model weights, seconds.
# Extra arguments go to pytest. RG_SKIP_BUILD=1 skips the rebuild (scripts/test.sh has just built).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
[ "${RG_SKIP_BUILD:-}" = 1 ] || build_native
# The brainteaser fixtures are pytest items (testpaths has fixtures/, the plugin is in addopts): the Pinky ones run
# here, with the library, CLI, TUI, server and web page tests.
echo "== pytest -m pinky (library, CLI, TUI, server, web page, Pinky fixtures)" >&2
"$VENV/bin/python" -m pytest -m "pinky and not real_engine" "$@"
