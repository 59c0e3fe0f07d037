"""``ogenius serve`` with several real models: the test GGUF registered under three names, placed by bytes under a
``--max-memory`` budget that holds two (a third loads by unloading the least recently used idle one); a model over
the whole budget gets a 503 naming the sizes; a pull from the mock hub streams its progress as SSE and the model is
served at once, a chat request never downloads, and ``DELETE`` unregisters and deletes what was downloaded; the
default model answers with its recommended sampling."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from rusty_genius import _native, facecrab

from tests.conftest import smollm2_path
from tests.mockhub import MockHub, default_hub
from tests.servers import live_server

pytestmark = pytest.mark.real_engine

SMALL = ["--context-size", "512", "--parallel", "1"]
USER = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A config directory whose registry holds the test GGUF as smol-a, smol-b and smol-c."""
    registry = facecrab.Registry(tmp_path / "config")
    registry.directory.mkdir(parents=True)
    for name in ("smol-a", "smol-b", "smol-c"):
        facecrab.import_model(str(smollm2_path()), name, registry=registry)
    return tmp_path


def _states(http: httpx.Client) -> dict[str, str]:
    return {m["id"]: m["status"] for m in http.get("/v1/models").json()["data"]}


def test_a_third_model_loads_into_a_full_budget_by_unloading_the_least_recently_used_idle_one(home: Path) -> None:
    need = _native.estimate_memory(str(smollm2_path()), context_size=512, parallel=1)["total"]
    budget = need * 5 // 2  # room for two
    env = {"RUSTY_GENIUS_HOME": str(home / "config")}
    with live_server("--model", "smol-a", *SMALL, "--max-memory", str(budget), "--max-tokens", "4", env=env) as server:
        with httpx.Client(base_url=server.http, timeout=60) as http:
            cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
            assert set(cards) == {"smol-a", "smol-b", "smol-c"}, "every registered model is served"
            assert cards["smol-a"]["status"] == "loaded" and cards["smol-a"]["memory"] == need
            assert cards["smol-b"]["quantization"] == "Q4_1" and cards["smol-b"]["context_length"] == 512
            assert {"chat", "embeddings"} <= set(cards["smol-b"]["capabilities"])
            with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
                for model in ("smol-b", "smol-a"):  # smol-a used last: smol-b is the least recently used
                    assert client.chat.completions.create(model=model, messages=USER).model == model  # type: ignore[arg-type]
                assert _states(http) == {"smol-a": "loaded", "smol-b": "loaded", "smol-c": "unloaded"}
                assert client.chat.completions.create(model="smol-c", messages=USER).model == "smol-c"  # type: ignore[arg-type]
            assert _states(http) == {"smol-a": "loaded", "smol-b": "unloaded", "smol-c": "loaded"}
            assert server.wait_for_log("unloaded smol-b")
            print(f"\nbudget {budget} bytes, each model {need}: smol-c loaded by unloading smol-b (LRU)")


def test_greedy_answers_of_two_models_streaming_at_once_are_their_answers_alone(home: Path) -> None:
    env = {"RUSTY_GENIUS_HOME": str(home / "config")}
    with live_server("--model", "smol-a", *SMALL, "--temperature", "0", "--max-tokens", "24", env=env) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
            asks = {"smol-a": "Name three colours.", "smol-b": "Count to five."}

            def ask(model: str) -> str:
                stream = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": asks[model]}], stream=True
                )
                return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

            alone = {model: ask(model) for model in asks}
            with ThreadPoolExecutor(2) as pool:
                together = dict(zip(asks, pool.map(ask, asks), strict=True))
            assert together == alone and all(alone.values())


def test_a_model_larger_than_the_budget_is_a_503_naming_the_sizes(home: Path) -> None:
    env = {"RUSTY_GENIUS_HOME": str(home / "config")}
    # --unload-after 0: no model is loaded at startup, so the server starts though none fits.
    with live_server("--model", "smol-a", *SMALL, "--max-memory", "64M", "--unload-after", "0", env=env) as server:
        with httpx.Client(base_url=server.http, timeout=60) as http:
            refused = http.post("/v1/chat/completions", json={"model": "smol-b", "messages": USER})
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "model_does_not_fit" and error["budget_bytes"] == 64 << 20
            assert "smol-b needs about 207 MiB of memory but the budget is 64 MiB" in error["message"]
            assert http.get("/health").json()["status"] == "ok", "the server stays up"


@pytest.fixture
def hub() -> Iterator[MockHub]:
    with default_hub() as running:
        yield running


def test_pull_streams_progress_serves_the_model_and_delete_removes_it(tmp_path: Path, hub: MockHub) -> None:
    env = {
        "RUSTY_GENIUS_HOME": str(tmp_path / "config"), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
    }  # fmt: skip
    with live_server("--model", str(smollm2_path()), *SMALL, env=env) as server:
        with httpx.Client(base_url=server.http, timeout=60) as http:
            before = len(hub.requests)
            unknown = http.post("/v1/chat/completions", json={"model": "qwen2.5-1.5b", "messages": USER})
            assert unknown.status_code == 404 and len(hub.requests) == before, "a chat request never downloads"
            events = []
            with http.stream("POST", "/v1/models/pull", json={"model": "qwen2.5-1.5b", "quant": "Q8_0"}) as sse:
                assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
                for line in sse.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
            assert events[-1] == "[DONE]"
            progress = [json.loads(e) for e in events[:-2]]
            assert progress and all(p["status"] == "downloading" for p in progress)
            assert progress[-1]["completed"] == progress[-1]["total"] > 0
            done = json.loads(events[-2])
            assert done["status"] == "success" and done["model"]["id"] == "qwen2.5-1.5b:Q8_0"
            assert done["model"]["status"] == "unloaded", "pulled, not loaded"
            assert "qwen2.5-1.5b:Q8_0" in _states(http)
            path = Path(facecrab.Registry(tmp_path / "config").models()["qwen2.5-1.5b:Q8_0"].path)
            assert path.is_file()
            with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
                deleted = client.models.delete("qwen2.5-1.5b:Q8_0")  # the official client's DELETE /v1/models/{id}
            assert deleted.deleted is True and deleted.id == "qwen2.5-1.5b:Q8_0"
            assert (deleted.model_extra or {})["files_deleted"] == [str(path)]
            assert not path.exists() and "qwen2.5-1.5b:Q8_0" not in _states(http)
            missing = http.post("/v1/models/pull", json={"model": "nobody/nothing", "stream": False})
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
            assert http.delete(f"/v1/models/{os.path.basename(smollm2_path())}").status_code == 409


def test_the_default_model_answers_with_its_recommended_sampling_and_ends_its_answers() -> None:
    """The embedded default (no --model) takes models.toml's sampling: short prompts that looped to the length limit
    at the global defaults end on their own."""
    with live_server("--parallel", "1", "--context-size", "1024") as server:
        with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
            for seed in (1, 2):
                answer = client.chat.completions.create(
                    model="smollm2-135m", messages=[{"role": "user", "content": "Write a short poem about the sea."}],
                    max_tokens=300, seed=seed,
                )  # fmt: skip
                assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
