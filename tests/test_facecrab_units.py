"""facecrab's pure parts: file-name safety, quant parsing, shard grouping, manifests."""

from __future__ import annotations

import pytest
from rusty_genius import ConfigError, DownloadError
from rusty_genius.facecrab import default_model, request_for, safe_repo_path
from rusty_genius.facecrab.quants import group, quant_of

pytestmark = pytest.mark.pinky


@pytest.mark.parametrize(
    "name",
    ["../x.gguf", "a/../../x.gguf", "/etc/x.gguf", "a\\b.gguf", "C:x.gguf", "c:/x.gguf", "", "a//b", "./x", "a\0b"],
)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(DownloadError, match="refusing the hub's file name"):
        safe_repo_path(name)


def test_ordinary_names_pass() -> None:
    for name in ("model-Q4_K_M.gguf", "sub/dir/model.Q8_0.gguf", "a..b.gguf"):
        assert safe_repo_path(name) == name


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("Qwen2.5-3B-Instruct-Q6_K.gguf", "Q6_K"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("big-q4_k_s-00001-of-00003.gguf", "Q4_K_S"),
        ("model-IQ2_XXS.gguf", "IQ2_XXS"),
        ("model-bf16.gguf", "BF16"),
        ("model.gguf", None),
    ],
)
def test_quant_of(name: str, quant: str | None) -> None:
    assert quant_of(name) == quant


def test_shards_group_only_when_complete() -> None:
    sets = group(["m-q4_k_m-00002-of-00002.gguf", "m-q4_k_m-00001-of-00002.gguf", "m-q8_0-00001-of-00002.gguf",
                  "m-q2_k.gguf", "README.md", "mmproj-m-f16.gguf"])  # fmt: skip
    assert [(s.quant, s.files) for s in sets] == [
        ("Q2_K", ("m-q2_k.gguf",)),
        ("Q4_K_M", ("m-q4_k_m-00001-of-00002.gguf", "m-q4_k_m-00002-of-00002.gguf")),
    ]


def test_manifests() -> None:
    assert default_model().name == "smollm2-135m"
    assert request_for("QWEN2.5-1.5B").repo == "Qwen/Qwen2.5-1.5B-Instruct"
    assert request_for("Qwen/Qwen2.5-1.5B-Instruct").name == "qwen2.5-1.5b"
    other = request_for("smollm2-135m", "q8_0")
    assert other.quant == "Q8_0" and other.files == () and other.sha256 == ()
    fresh = request_for("someone/Some-Model")
    assert fresh.quant == "Q4_K_M" and fresh.repo == "someone/Some-Model"
    with pytest.raises(ConfigError, match="unknown model 'nonsense'"):
        request_for("nonsense")
