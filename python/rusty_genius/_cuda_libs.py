"""Makes the CUDA build's GPU libraries loadable before ``rusty_genius._native`` is imported.

The CUDA wheel (``rusty-genius-cuda``, scripts/build-wheels.sh) does not bundle the CUDA runtime or cuBLAS: it depends
on NVIDIA's PyPI packages ``nvidia-cuda-runtime`` and ``nvidia-cublas``, which install ``libcudart.so.13``,
``libcublas.so.13`` and ``libcublasLt.so.13`` under ``site-packages/nvidia/cu13/lib``. The dynamic linker does not look
there, so when importing the extension fails on one of those names, they are loaded first with ``RTLD_GLOBAL`` (the
linker then reuses them by soname) and the import is tried again, as PyTorch does for the same packages. The CPU build
never needs them: its import succeeds on the first try and nothing here runs.

The driver's ``libcuda.so.1`` is not needed to import: without a driver the extension loads, llama.cpp finds no CUDA
device and models run on the CPU (``build_info()["cuda"]["error"]`` says so).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

# In dependency order: cuBLAS needs cuBLASLt, and both need the runtime.
LIBRARIES = ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13")


def _nvidia_lib_dirs() -> list[Path]:
    """Every ``nvidia/cu13/lib`` on the import path (the ``nvidia`` namespace package may span several folders)."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(p) / "cu13" / "lib" for p in spec.submodule_search_locations if (Path(p) / "cu13" / "lib").is_dir()]


def _preload() -> None:
    dirs = _nvidia_lib_dirs()
    for name in LIBRARIES:
        found = next((d / name for d in dirs if (d / name).is_file()), None)
        if found is None:
            raise ImportError(
                f"rusty-genius-cuda needs {name} from NVIDIA's CUDA 13 packages, which are not installed here: "
                "pip install 'nvidia-cuda-runtime>=13.5,<14' 'nvidia-cublas>=13.1,<14' (they are dependencies of "
                "rusty-genius-cuda; an install with --no-deps leaves them out), or install rusty-genius for the CPU"
            )
        ctypes.CDLL(str(found), mode=ctypes.RTLD_GLOBAL)


def _names_cuda_library(error: ImportError) -> bool:
    return any(name in str(error) for name in LIBRARIES)


def import_native() -> ModuleType:
    """Imports ``rusty_genius._native``, preloading the CUDA libraries first when the extension asks for them."""
    try:
        return importlib.import_module("rusty_genius._native")
    except ImportError as error:
        if not _names_cuda_library(error):
            raise
    _preload()
    return importlib.import_module("rusty_genius._native")


import_native()
