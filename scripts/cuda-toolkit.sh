#!/usr/bin/env bash
# The CUDA toolkit the CUDA wheel is built with, from NVIDIA's own PyPI packages, in a build-only virtual environment
# (target/cuda-toolkit): no system package, no driver, no GPU needed, and nothing outside target/ changes. Prints the
# toolkit root (the folder holding bin/nvcc, include/ and lib/) on stdout; progress goes to stderr.
#
#     CUDA_ROOT="$(scripts/cuda-toolkit.sh)"
#
# CUDA 13: its PyPI packages (nvidia-cuda-nvcc, -crt, -runtime, -cccl, nvidia-nvvm, nvidia-cublas) lay out a whole
# toolkit under site-packages/nvidia/cu13 (bin/nvcc, nvvm/bin/cicc, include/, lib/). CUDA 12's nvidia-cuda-nvcc-cu12
# ships ptxas but no nvcc, so it cannot compile. The versions are pinned; the wheel's runtime dependencies
# (scripts/build-wheels.sh) follow the same major version. CMake's FindCUDAToolkit looks for the unversioned
# libcudart.so / libcublas.so a system toolkit has; the packages carry only the versioned files, so links are added
# beside them (inside this venv only).
#
# Reused when the stamp (the package list) matches; a first run downloads about 600 MB (cuBLAS is most of it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${RG_CUDA_TOOLKIT_VENV:-$ROOT/target/cuda-toolkit}"
PACKAGES=(
  "nvidia-cuda-nvcc==13.5.37"
  "nvidia-cuda-crt==13.5.37"
  "nvidia-nvvm==13.5.37"
  "nvidia-cuda-runtime==13.5.37"
  "nvidia-cuda-cccl==13.3.5.0.6"
  "nvidia-cublas==13.10.0.20"
)
STAMP="$DIR/rusty-genius-cuda-toolkit.stamp"
PY="$DIR/bin/python"

toolkit_root() {
  "$PY" -c 'import importlib.util, pathlib; spec = importlib.util.find_spec("nvidia")
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / "cu13")'
}

if ! { [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PACKAGES[*]}" ]; }; then
  echo "== cuda-toolkit: installing ${PACKAGES[*]} into $DIR" >&2
  rm -rf "$DIR"
  "${RG_CUDA_TOOLKIT_PYTHON:-python3}" -m venv "$DIR"
  "$PY" -m pip install -q --disable-pip-version-check "${PACKAGES[@]}" >&2
  root="$(toolkit_root)"
  for lib in "$root"/lib/lib*.so.*; do
    link="${lib%%.so.*}.so"
    [ -e "$link" ] || ln -s "$(basename "$lib")" "$link"
  done
  "$root/bin/nvcc" --version >&2
  echo "${PACKAGES[*]}" > "$STAMP"
fi
root="$(toolkit_root)"
[ -x "$root/bin/nvcc" ] || { echo "cuda-toolkit: no nvcc in $root (remove $DIR and run again)" >&2; exit 1; }
echo "$root"
