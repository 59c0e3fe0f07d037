"""``ogenius serve`` on the real engine (SmolLM2-135M): the openai client end to end, greedy answers identical over
JSON and SSE, and the KV cache reported as cached prompt tokens."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import websockets.sync.client

from tests.conftest import smollm2_path
from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.real_engine

USER: Any = [{"role": "user", "content": "Name a primary color."}]
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--model", str(smollm2_path()), "--temperature", "0", "--no-unload") as live:
        yield live


def test_openai_client_streaming_and_not_agree_on_the_real_model(server: LiveServer) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        listed = client.models.list().data  # the default first, then what the session's registry holds
        model = listed[0]
        assert model.id == "SmolLM2-135M-Instruct.Q4_1.gguf" and model.default is True  # type: ignore[attr-defined]
        answer = client.chat.completions.create(model=model.id, messages=USER, max_tokens=16)
        content = answer.choices[0].message.content
        assert content and "<think>" not in content
        assert answer.choices[0].finish_reason in ("stop", "length")
        assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 16

        chunks = list(
            client.chat.completions.create(
                messages=USER, model=model.id, max_tokens=16, stream=True, stream_options={"include_usage": True}
            )
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == content, "greedy decoding gives the same answer over SSE"
        usage = [c.usage for c in chunks if c.usage is not None]
        assert len(usage) == 1 and usage[0].completion_tokens == answer.usage.completion_tokens
        assert usage[0].prompt_tokens_details is not None
        assert (usage[0].prompt_tokens_details.cached_tokens or 0) > 0, "the same prompt again reuses the KV cache"


def test_a_gbnf_grammar_shapes_the_answer_and_a_bad_one_is_a_400(server: LiveServer) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        answer = client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1.gguf",
            messages=USER,
            max_tokens=16,
            extra_body={"grammar": 'root ::= ("red" | "blue" | "yellow") "!"'},
        )
        assert answer.choices[0].message.content in ("red!", "blue!", "yellow!")
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(
                model="SmolLM2-135M-Instruct.Q4_1.gguf",
                messages=USER,
                max_tokens=4,
                extra_body={"grammar": "root ::= ( unclosed"},
            )
        body = bad.value.body
        assert isinstance(body, dict) and body.get("param") == "grammar", body
        # llama.cpp parses a grammar recursively: thousands of nested groups overflowed the worker's stack.
        deep = "root ::= " + "(" * 8000 + '"a"' + ")" * 8000
        with pytest.raises(openai.BadRequestError, match="may nest at most 128 deep"):
            client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2, extra_body={"grammar": deep})
        assert client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1.gguf", messages=USER, max_tokens=2
        ).choices
    assert "Traceback" not in server.log()


def test_a_streamed_prompt_over_the_context_is_a_400_from_create_on_every_api() -> None:
    """The engine admits a request (template applied, prompt counted) before the server answers 200, so a streamed
    request that cannot fit gets the same 400 as a plain one, raised by ``create`` as ``BadRequestError``."""
    import anthropic

    long = "word " * 200
    model = "SmolLM2-135M-Instruct.Q4_1.gguf"
    with live_server("--model", str(smollm2_path()), "--context-size", "64", "--no-unload") as live:
        with openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0) as client:
            calls: dict[str, Callable[[], object]] = {
                "messages": lambda: client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": long}], stream=True
                ),
                "prompt": lambda: client.completions.create(model=model, prompt=long, stream=True),
                "input": lambda: client.responses.create(model=model, input=long, stream=True),
            }
            for param, call in calls.items():
                with pytest.raises(openai.BadRequestError) as bad:
                    call()
                assert bad.value.code == "context_length_exceeded" and bad.value.param == param
                assert "the context holds 64" in bad.value.message
                # llama-server's fields, for clients that trim the history by the numbers.
                error = bad.value.body
                assert isinstance(error, dict) and error["n_ctx"] == 64 and error["n_prompt_tokens"] > 64
        with anthropic.Anthropic(base_url=live.http, api_key="unused", max_retries=0) as claude:
            with pytest.raises(anthropic.BadRequestError) as refused:
                with claude.messages.stream(
                    model=model, max_tokens=8, messages=[{"role": "user", "content": long}]
                ) as stream:
                    list(stream.text_stream)
            assert "the context holds 64" in str(refused.value)
            assert isinstance(refused.value.body, dict) and refused.value.body["error"]["n_ctx"] == 64
        with websockets.sync.client.connect(live.ws) as socket:
            socket.recv(5)  # hello
            socket.send(json.dumps({"type": "chat", "id": "w", "messages": [{"role": "user", "content": long}]}))
            error = json.loads(socket.recv(10))
            assert error["type"] == "error" and error["error"]["code"] == "context_length_exceeded"
            assert error["error"]["n_ctx"] == 64 and error["error"]["n_prompt_tokens"] > 64
