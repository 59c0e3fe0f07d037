# Sourced by the other scripts: one place for paths and build settings.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
VENV="$ROOT/.venv"
export VENV
# Cargo's build output lives outside the clone, so a fresh clone (CI) still rebuilds incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rusty-genius/target}"
# Portable x86-64-v3 features: never target-cpu=native (llama.cpp's AMX path segfaults here; DESIGN.md §5).
if [ "$(uname -m)" = "x86_64" ] && [ -z "${RUSTFLAGS:-}" ]; then
  export RUSTFLAGS="-C target-feature=+avx2,+fma,+f16c,+bmi2"
fi
export PYO3_PYTHON="$VENV/bin/python"
export TMPDIR="$ROOT/target/tmp"
mkdir -p "$TMPDIR"

# Cargo features of the development build: Metal on macOS, the CPU build elsewhere (CUDA: scripts/metal.sh --cuda).
NATIVE_FEATURES=()
if [ "$(uname -s)" = "Darwin" ]; then NATIVE_FEATURES=(--features metal); fi
# Builds the extension into .venv with those features; extra arguments go to maturin (e.g. --features cuda).
build_native() {
  "$VENV/bin/maturin" develop --release -q --skip-install ${NATIVE_FEATURES[@]+"${NATIVE_FEATURES[@]}"} "$@"
}

# Installs Debian packages with apt-get (as root, or with sudo); returns 1 where there is no apt-get.
apt_install() {
  command -v apt-get >/dev/null || return 1
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
