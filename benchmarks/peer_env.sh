#!/usr/bin/env bash
# The peer of the engine benchmark: llama-cpp-python built from source with the same CPU features as our build,
# in its own venv (target/peer-venv), built once and reused. Prints the venv's python path on stdout; everything
# else (progress, the build log on failure) goes to stderr.
#
#     PEER_PY="$(benchmarks/peer_env.sh)"
#
# Why these CMake flags: our RUSTFLAGS (-C target-feature=+avx2,+fma,+f16c,+bmi2, scripts/env.sh) make
# llama-cpp-sys-2 configure llama.cpp with GGML_NATIVE=OFF and AVX, AVX2, FMA, F16C, BMI2, SSE42 on (OpenMP on,
# llama.cpp's default). The peer gets exactly those. Never GGML_NATIVE=ON: it enables AMX here, and llama.cpp's AMX
# path segfaults on every decode of 2+ tokens (DESIGN.md §5).
#
# The reuse check is cheap (a stamp file plus a find_spec, no llama.cpp load): the stamp records the version and the
# CMake flags, so changing either here rebuilds. The build takes several minutes on 2 cores; its log is kept in
# target/tmp/peer-build.log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER_VENV="${PEER_VENV:-$ROOT/target/peer-venv}"
PEER_VERSION="0.3.36"
PEER_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_SSE42=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
# The peer runs on the same interpreter as .venv, so the Python-side overhead of streaming is comparable.
BASE_PYTHON="${PEER_BASE_PYTHON:-$ROOT/.venv/bin/python}"
STAMP="$PEER_VENV/rusty-genius-peer.stamp"
EXPECTED="llama-cpp-python==$PEER_VERSION $PEER_CMAKE_ARGS"
PY="$PEER_VENV/bin/python"

is_ready() {
  [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$EXPECTED" ] \
    && "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llama_cpp") is None)' 2>/dev/null
}

# The peer's OpenAI server (benchmarks/concurrency.py) needs llama-cpp-python's [server] extras: plain Python
# packages, installed on top of a ready build without rebuilding it.
SERVER_EXTRAS=("uvicorn>=0.22.0" "fastapi>=0.100.0" "pydantic-settings>=2.0.1" "sse-starlette>=1.6.1"
  "starlette-context>=0.3.6,<0.4" "PyYAML>=5.1")
ensure_server_extras() {
  "$PY" -c 'import fastapi, sse_starlette, starlette_context, pydantic_settings, uvicorn, yaml' 2>/dev/null \
    || "$PY" -m pip install -q "${SERVER_EXTRAS[@]}" >&2
}

if is_ready; then
  ensure_server_extras
  echo "$PY"
  exit 0
fi

export TMPDIR="$ROOT/target/tmp"
mkdir -p "$TMPDIR"
LOG="$TMPDIR/peer-build.log"
# One build at a time: a second caller waits for the first, then finds the venv ready.
exec 9>"$TMPDIR/peer-venv.lock"
flock 9
if is_ready; then
  ensure_server_extras
  echo "$PY"
  exit 0
fi

if [ ! -x "$BASE_PYTHON" ]; then
  echo "peer_env: no $BASE_PYTHON to base the peer venv on; run scripts/setup.sh first" >&2
  exit 1
fi
echo "peer_env: building llama-cpp-python $PEER_VERSION from source into $PEER_VENV (several minutes; log: $LOG)" >&2
start=$(date +%s)
rm -rf "$PEER_VENV"
"$BASE_PYTHON" -m venv "$PEER_VENV"
{
  "$PY" -m pip install -q --upgrade pip
  # --no-binary and --no-cache-dir: a wheel from pip's cache may have been built with other flags.
  CMAKE_ARGS="$PEER_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" FORCE_CMAKE=1 \
    "$PY" -m pip install -v --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==$PEER_VERSION"
} >"$LOG" 2>&1 || {
  tail -n 40 "$LOG" >&2
  echo "peer_env: build failed; full log in $LOG" >&2
  exit 1
}

# Check what was built, not what was asked for: the CPU features llama.cpp reports, and no AMX.
info="$("$PY" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())')"
echo "peer_env: built in $(($(date +%s) - start)) s; system info: $info" >&2
if ! grep -q 'AVX2 = 1' <<<"$info" || grep -q 'AMX' <<<"$info"; then
  echo "peer_env: unexpected CPU features in the peer build (want AVX2, no AMX): $info" >&2
  exit 1
fi
# What the benchmark prints as the peer's build: the flags asked for, and what CMake reported doing with them.
{
  echo "CMAKE_ARGS=$PEER_CMAKE_ARGS"
  grep -E 'CMAKE_BUILD_TYPE=|llama.cpp version:|ggml version:|ggml commit:|Adding CPU backend variant' "$LOG" \
    | sed -e 's/^[[:space:]]*//' -e 's/^-- //'
} >"$PEER_VENV/rusty-genius-peer-build.txt"
echo "$EXPECTED" >"$STAMP"
ensure_server_extras
echo "$PY"
