#!/usr/bin/env bash
# The project's test command: the gates (ruff lint and format, cargo fmt, import cycles, cargo clippy, stubtest,
# mypy strict), the Rust tests and the build, then scripts/pinky.sh and scripts/metal.sh (the brainteaser harness and
# pytest, on Pinky and on the real engine). Exits non-zero on any failure.
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

# Gates: lint and format (Python and Rust) and import cycles first, because they take seconds.
echo "== ruff check, ruff format --check (python, tests, benchmarks, scripts)" >&2
"$VENV/bin/ruff" check python tests benchmarks scripts
"$VENV/bin/ruff" format --check python tests benchmarks scripts

echo "== cargo fmt --check" >&2
cargo fmt --all --check

echo "== no import cycles (Python package and rust/cortex)" >&2
"$VENV/bin/python" scripts/check_imports.py

echo "== no tokio, no async-std (the async runtime is smol)" >&2
if cargo tree --locked --workspace -e normal,build | grep -Ei '^[^a-z]*(tokio|async-std) '; then
  echo "test: tokio or async-std is in the dependency tree" >&2
  exit 1
fi

echo "== cargo test (cortex, no C++)" >&2
cargo test --locked -p rusty-genius-cortex --no-default-features

echo "== build (maturin develop --release ${NATIVE_FEATURES[*]-})" >&2
build_native

# After the build: the release profile's llama.cpp build is reused, so clippy only checks our crates.
echo "== cargo clippy (workspace, all targets, warnings are errors)" >&2
cargo clippy --locked --release --workspace --all-targets -- -D warnings

echo "== stubtest (_native.pyi against the built module; intended differences in python/stubtest-allowlist.txt)" >&2
"$VENV/bin/python" -m mypy.stubtest rusty_genius._native --mypy-config-file pyproject.toml \
  --allowlist python/stubtest-allowlist.txt

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
