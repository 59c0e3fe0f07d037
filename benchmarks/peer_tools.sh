#!/usr/bin/env bash
# llama.cpp's own tools, the ceilings of benchmarks/ceiling.py: llama-server, llama-bench and llama-batched-bench,
# built from the llama.cpp tree that llama-cpp-python's sdist vendors (the version benchmarks/peer_env.sh builds),
# with the same CMake CPU flags, into target/peer-tools/, built once and reused. Prints the bin directory on stdout;
# everything else (progress, the build log on failure) goes to stderr.
#
#     BIN="$(benchmarks/peer_tools.sh)"; "$BIN/llama-bench" -m MODEL -t 2
#
# Why the sdist: the llama-cpp-sys-2 crate vendors only what it links (no tools/server, llama-bench or batched-bench
# sources); llama-cpp-python's sdist vendors the whole llama.cpp tree. The two are not necessarily the same llama.cpp
# commit: target/peer-tools/llama-cpp-version.txt records the sdist's and the crate's (ggml version, a digest of
# src/ + include/, so "same tree" is checked, not assumed) and ceiling.py prints it.
#
# Why these CMake flags: exactly peer_env.sh's (GGML_NATIVE=OFF, AVX/AVX2/FMA/F16C/BMI2/SSE42 on, AVX512 and AMX off):
# GGML_NATIVE=ON enables AMX here and llama.cpp's AMX path segfaults on every decode of 2+ tokens (DESIGN.md §5).
# On top: the Web UI neither built nor downloaded (LLAMA_USE_PREBUILT_UI fetches it from Hugging Face), no OpenSSL,
# static libraries (the binaries do not depend on the build tree's .so files).
#
# The build runs under `nice -n 10` (several minutes on 2 cores); its log is target/tmp/peer-tools-build.log.
# PEER_TOOLS_DIR overrides the output directory, PEER_TOOLS_SDIST a local llama_cpp_python-0.3.36.tar.gz.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PEER_TOOLS_DIR:-$ROOT/target/peer-tools}"
PEER_VERSION="0.3.36"
PEER_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_SSE42=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
TOOLS_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF"
TARGETS=(llama-server llama-bench llama-batched-bench)
STAMP="$OUT/rusty-genius-peer-tools.stamp"
EXPECTED="llama-cpp-python==$PEER_VERSION $PEER_CMAKE_ARGS $TOOLS_CMAKE_ARGS ${TARGETS[*]}"
BIN="$OUT/bin"

SRC="$OUT/src"
TREE="$SRC/llama_cpp_python-$PEER_VERSION/vendor/llama.cpp"
BUILD="$OUT/build"
# The CPU flags CMake recorded for the build (what was built, not what was asked for).
cmake_flags() { grep -E 'GGML_(NATIVE|AVX2|AVX512|AMX_TILE|FMA|F16C|BMI2|OPENMP):' "$BUILD/CMakeCache.txt" 2>/dev/null \
  | sed 's/:[A-Z]*=/=/' | tr '\n' ' '; }

# Which llama.cpp this is, beside the crate's vendored copy (the version Cargo.lock pins): neither tree is a git
# checkout, so record the commits their packages name, the ggml version and a digest of src/ + include/ (the same
# digest means the same libllama sources). Rewritten on every call: Cargo.lock may have moved to another crate.
tree_digest() { (cd "$1" && find src include -type f -print0 | sort -z | xargs -0 sha256sum \
  | sha256sum | cut -c1-16); }
ggml_version() { sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$1/ggml/CMakeLists.txt" \
  | paste -sd.; }
record_versions() {
  local info commit crate vcs sys_version crate_tree
  info="$(cmake_flags)"
  sys_version="$(grep -A1 '^name = "llama-cpp-sys-2"' "$ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
  crate_tree="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 3 -type d \
    -path "*/llama-cpp-sys-2-${sys_version:-none}/llama.cpp" 2>/dev/null | head -n 1 || true)"
  {
    echo "CMAKE_ARGS=$PEER_CMAKE_ARGS $TOOLS_CMAKE_ARGS"
    echo "cmake: $info"
    # The sdist's CHANGELOG names the llama.cpp commit of its release; the crate's .cargo_vcs_info.json names the
    # llama-cpp-rs commit it was published from (whose submodule pointer is the llama.cpp commit).
    commit="$(sed -n "/^## \[$PEER_VERSION\]/,/^## \[/s/.*llama\.cpp@\([0-9a-f]*\).*/\1/p" "$TREE/../../CHANGELOG.md" \
      | head -n 1)"
    echo "sdist: llama-cpp-python $PEER_VERSION vendor/llama.cpp @${commit:-?}, ggml $(ggml_version "$TREE")," \
      "src+include digest $(tree_digest "$TREE")"
    if [ -n "$crate_tree" ]; then
      crate="$(basename "$(dirname "$crate_tree")")"
      vcs="$(sed -n 's/.*"sha1": "\([0-9a-f]\{12\}\).*/\1/p' "$crate_tree/../.cargo_vcs_info.json" 2>/dev/null || true)"
      echo "crate: $crate (llama-cpp-rs @${vcs:-?}) llama.cpp, ggml $(ggml_version "$crate_tree")," \
        "src+include digest $(tree_digest "$crate_tree")"
    else
      echo "crate: (no llama-cpp-sys-2 source in the cargo registry)"
    fi
  } >"$OUT/llama-cpp-version.txt.$$"
  mv "$OUT/llama-cpp-version.txt.$$" "$OUT/llama-cpp-version.txt"
}

is_ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$EXPECTED" ] || return 1
  local t
  for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || return 1; done
}

if is_ready; then
  record_versions
  echo "$BIN"
  exit 0
fi

export TMPDIR="$ROOT/target/tmp"
mkdir -p "$TMPDIR" "$OUT"
LOG="$TMPDIR/peer-tools-build.log"
# One build at a time: a second caller waits for the first, then finds the tools ready.
exec 9>"$TMPDIR/peer-tools.lock"
flock 9
if is_ready; then
  record_versions
  echo "$BIN"
  exit 0
fi
for tool in cmake c++ tar; do
  if ! command -v "$tool" >/dev/null; then
    echo "peer_tools: $tool is missing (scripts/setup.sh installs cmake)" >&2
    exit 1
  fi
done

# The sdist: pip's ordinary client, from the index pip is configured with; kept in target/peer-tools/src.
if [ ! -f "$TREE/CMakeLists.txt" ]; then
  rm -rf "$SRC"
  mkdir -p "$SRC"
  sdist="${PEER_TOOLS_SDIST:-}"
  if [ -z "$sdist" ]; then
    echo "peer_tools: downloading the llama-cpp-python $PEER_VERSION sdist" >&2
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY="$(command -v python3)"
    "$PY" -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$PEER_VERSION" -d "$SRC" >&2
    sdist="$SRC/llama_cpp_python-$PEER_VERSION.tar.gz"
  fi
  tar -xzf "$sdist" -C "$SRC"
fi
[ -f "$TREE/CMakeLists.txt" ] || { echo "peer_tools: no vendor/llama.cpp in the sdist ($TREE)" >&2; exit 1; }

echo "peer_tools: building ${TARGETS[*]} from $TREE (nice -n 10, several minutes; log: $LOG)" >&2
start=$(date +%s)
rm -rf "$BUILD" "$BIN"
# shellcheck disable=SC2086  # the flag strings are word lists on purpose
{
  nice -n 10 cmake -S "$TREE" -B "$BUILD" $PEER_CMAKE_ARGS $TOOLS_CMAKE_ARGS
  nice -n 10 cmake --build "$BUILD" --config Release -j "$(nproc)" --target "${TARGETS[@]}"
} >"$LOG" 2>&1 || {
  tail -n 40 "$LOG" >&2
  echo "peer_tools: build failed; full log in $LOG" >&2
  exit 1
}
mkdir -p "$BIN"
for t in "${TARGETS[@]}"; do cp "$BUILD/bin/$t" "$BIN/$t"; done

# Check what was built, not what was asked for: the CPU features ggml reports, and no AMX.
info="$(cmake_flags)"
if ! grep -q 'GGML_AVX2=ON' <<<"$info" || grep -q 'GGML_NATIVE=ON\|GGML_AMX_TILE=ON' <<<"$info"; then
  echo "peer_tools: unexpected CPU flags in the build (want AVX2, no NATIVE, no AMX): $info" >&2
  exit 1
fi

record_versions
echo "peer_tools: built in $(($(date +%s) - start)) s; $(tr '\n' ';' <"$OUT/llama-cpp-version.txt")" >&2
echo "$EXPECTED" >"$STAMP"
echo "$BIN"
