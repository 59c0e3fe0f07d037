#!/usr/bin/env bash
# The project's test command: Rust tests, build, stub and type checks, then scripts/pinky.sh and scripts/metal.sh
# (the brainteaser harness and pytest, on Pinky and on the real engine). Exits non-zero on any failure.
# Extra arguments go to pytest (e.g. scripts/test.sh -k stream).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
if [ ! -x "$VENV/bin/python" ]; then
  echo "test: no .venv; run scripts/setup.sh first" >&2
  exit 1
fi

# The web page's browser tests drive Debian's chromium (Playwright never downloads a browser here); only the tests
# need it, so it is installed here rather than by setup.sh.
if [ "$(uname -s)" = "Linux" ] && ! command -v chromium >/dev/null; then
  echo "test: installing chromium (for the web page's browser tests)" >&2
  apt_install chromium || echo "test: the web page's browser tests need chromium at /usr/bin/chromium; install it" >&2
fi

echo "== no tokio, no async-std (the async runtime is smol)" >&2
if cargo tree --locked --workspace -e normal,build | grep -Ei '^[^a-z]*(tokio|async-std) '; then
  echo "test: tokio or async-std is in the dependency tree" >&2
  exit 1
fi

echo "== cargo test (cortex, no C++)" >&2
cargo test --locked -p rusty-genius-cortex --no-default-features

echo "== build (maturin develop --release ${NATIVE_FEATURES[*]-})" >&2
build_native

echo "== stubtest (_native.pyi against the built module)" >&2
"$VENV/bin/python" -m mypy.stubtest rusty_genius._native --ignore-missing-stub --mypy-config-file pyproject.toml

echo "== mypy" >&2
"$VENV/bin/python" -m mypy

echo "== every test is marked pinky or real_engine" >&2
if "$VENV/bin/python" -m pytest -q --collect-only -m "not pinky and not real_engine" | grep -q '::'; then
  "$VENV/bin/python" -m pytest -q --collect-only -m "not pinky and not real_engine" >&2
  echo "test: the tests above have neither marker, so neither pinky.sh nor metal.sh runs them" >&2
  exit 1
fi

export RG_SKIP_BUILD=1
scripts/pinky.sh "$@"
scripts/metal.sh "$@"
