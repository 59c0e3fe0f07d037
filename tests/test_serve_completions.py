"""OpenAI's legacy ``/v1/completions``: the official openai client, unchanged, against a live ``ogenius serve`` on Pinky
(streamed and not, list prompts, ``n``, ``echo``, ``logprobs``, ``stop``, token prompts, the 400s, a client that
leaves), and on SmolLM2 a greedy completion that knows its capitals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import smollm2_path
from tests.servers import LiveServer, live_server

PROMPT = "Are you pondering what I'm pondering"
# Pinky continues any raw prompt with its script, think tags and all (a raw completion parses nothing).
ANSWER = "<think>Narf! Poit!</think>\n\n" + " ".join(["Narf!"] * 20)
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENS = ["<think>", "Narf", "!", " Poit", "!", "</think>", "\n\n", "Narf!", *[" Narf!"] * 19]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "20", "--parallel", "4") as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
        yield c


@pytest.mark.pinky
def test_a_completion_continues_the_prompt_with_16_tokens_by_default(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="pinky", prompt=PROMPT)
    [choice] = answer.choices
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-") and answer.model == "pinky"
    assert choice.index == 0 and choice.logprobs is None
    assert choice.text == "".join(TOKENS[:16]) and choice.finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 16
    assert answer.usage.prompt_tokens == len(PROMPT.split()), "Pinky counts words"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 16
    whole = client.completions.create(model="pinky", prompt=PROMPT, max_tokens=100, temperature=0.3, seed=4)
    assert whole.choices[0].text == ANSWER and whole.choices[0].finish_reason == "stop"


@pytest.mark.pinky
def test_streamed_chunks_spell_the_same_text_then_usage_and_done(client: openai.OpenAI, server: LiveServer) -> None:
    chunks = list(
        client.completions.create(
            model="pinky", prompt=PROMPT, max_tokens=9, stream=True, stream_options={"include_usage": True}
        )
    )
    assert {c.object for c in chunks} == {"text_completion"} and len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "".join(TOKENS[:9])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    with httpx.stream("POST", server.http + "/v1/completions", json={"prompt": PROMPT, "stream": True}) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in raw.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and "usage" not in lines[-2], "usage only when asked for"


@pytest.mark.pinky
def test_a_list_of_prompts_gets_n_choices_each_listed_prompt_by_prompt(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="pinky", prompt=["one two", "three"], n=2, max_tokens=3, echo=True)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    texts = [c.text for c in answer.choices]
    assert texts == ["one two<think>Narf!"] * 2 + ["three<think>Narf!"] * 2
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 3 and answer.usage.completion_tokens == 12, "each prompt counted once"
    streamed: dict[int, str] = {}
    for chunk in client.completions.create(model="pinky", prompt=["one two", "three"], n=2, max_tokens=3, stream=True):
        for part in chunk.choices:
            streamed[part.index] = streamed.get(part.index, "") + part.text
    assert streamed == dict.fromkeys(range(4), "<think>Narf!")


@pytest.mark.pinky
def test_logprobs_in_the_legacy_shape_with_offsets_into_the_text(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="pinky", prompt=PROMPT, max_tokens=5, logprobs=2)
    [choice] = answer.choices
    lp = choice.logprobs
    assert lp is not None and lp.tokens == TOKENS[:5] and choice.text == "".join(TOKENS[:5])
    assert lp.token_logprobs == [0.0] * 5
    assert lp.top_logprobs == [{t: 0.0} for t in TOKENS[:5]], "Pinky is certain of its piece"
    assert lp.text_offset is not None
    assert all(choice.text[o:].startswith(t) for o, t in zip(lp.text_offset, lp.tokens, strict=True))

    echoed = client.completions.create(model="pinky", prompt="Hi you", max_tokens=2, logprobs=0, echo=True)
    [part] = echoed.choices
    assert part.text == "Hi you<think>Narf"
    assert part.logprobs is not None and part.logprobs.tokens == ["H", "i", " ", "y", "o", "u", "<think>", "Narf"]
    assert part.logprobs.token_logprobs == [None] * 6 + [0.0, 0.0], "the prompt's tokens are not scored"
    assert part.logprobs.top_logprobs == [None] * 6 + [{"<think>": 0.0}, {"Narf": 0.0}]
    assert part.logprobs.text_offset == [0, 1, 2, 3, 4, 5, 6, 13]

    streamed: list[str] = []
    text = ""
    echoed_stream = client.completions.create(
        model="pinky", prompt="Hi", max_tokens=4, logprobs=1, echo=True, stream=True
    )
    for chunk in echoed_stream:
        for c in chunk.choices:
            text += c.text
            if c.logprobs is not None and c.logprobs.tokens:
                streamed += c.logprobs.tokens
    assert text == "Hi" + "".join(TOKENS[:4]) == "".join(streamed)


@pytest.mark.pinky
def test_stop_strings_token_prompts_and_the_sampling_fields(client: openai.OpenAI, server: LiveServer) -> None:
    stopped = client.completions.create(model="pinky", prompt=PROMPT, stop=[" Poit"], max_tokens=30)
    assert stopped.choices[0].text == "<think>Narf!" and stopped.choices[0].finish_reason == "stop"
    fields: Any = {"presence_penalty": 0.5, "frequency_penalty": 0.5, "top_p": 0.9, "logit_bias": {"5": 1}}
    tokens = client.completions.create(model="pinky", prompt=list(b"Hi"), echo=True, max_tokens=1, user="me", **fields)
    assert tokens.choices[0].text == "Hi<think>", "token ids are detokenized (Pinky's tokens are bytes)"
    many = client.completions.create(model="pinky", prompt=[list(b"a"), list(b"b")], max_tokens=1, echo=True, best_of=1)
    assert [c.text for c in many.choices] == ["a<think>", "b<think>"]
    mixed = httpx.post(
        server.http + "/v1/completions", json={"prompt": [list(b"a"), "b"], "max_tokens": 1, "echo": True}
    )
    assert [c["text"] for c in mixed.json()["choices"]] == ["a<think>", "b<think>"]
    alias = httpx.post(server.http + "/completions", json={"prompt": "x", "max_tokens": 2})
    assert alias.status_code == 200 and alias.json()["choices"][0]["text"] == "<think>Narf"
    schema = {"prompt": "x", "max_tokens": 2, "json_schema": {"type": "object"}}
    assert httpx.post(server.http + "/v1/completions", json=schema).status_code == 200


BAD: list[tuple[dict[str, Any], str]] = [
    ({}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": ["a", ""]}, "prompt[1]"),
    ({"prompt": ["a", []]}, "prompt[1]"),
    ({"prompt": [1, -2]}, "prompt"),
    ({"prompt": [[1], [1.5]]}, "prompt[1]"),
    ({"prompt": [1, 2, 999]}, "prompt"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "suffix": 3}, "suffix"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
    ({"prompt": "x", "n": 2, "best_of": 1}, "best_of"),
    ({"prompt": "x", "logprobs": 6}, "logprobs"),
    ({"prompt": "x", "logprobs": True}, "logprobs"),
    ({"prompt": "x", "echo": "yes"}, "echo"),
    ({"prompt": "x", "n": 9}, "n"),
    ({"prompt": ["a", "b", "c", "d", "e"], "n": 4}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "stop": 5}, "stop"),
    ({"prompt": "x", "logit_bias": {"tok": 1}}, "logit_bias"),
    ({"prompt": "x", "response_format": {"type": "xml"}}, "response_format.type"),
    ({"prompt": "x", "json_schema": "object"}, "json_schema"),
    ({"prompt": "x", "user": 5}, "user"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
]


@pytest.mark.pinky
@pytest.mark.parametrize(("body", "param"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_400_naming_the_field(server: LiveServer, body: dict[str, Any], param: str) -> None:
    refused_400(server, "/v1/completions", body, param)


def refused_400(server: LiveServer, path: str, body: dict[str, Any], param: str) -> dict[str, Any]:
    """Posts ``body`` and checks the answer is a 400 in OpenAI's shape naming ``param``, and that the server still
    answers; returns the error."""
    response = httpx.post(server.http + path, json=body)
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert httpx.get(server.http + "/health").json()["status"] == "ok"
    return error


@pytest.mark.pinky
def test_the_sdk_raises_and_the_server_keeps_serving(client: openai.OpenAI, server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="pinky", prompt="x", suffix="y")
    assert refused.value.param == "suffix" and "fill-in-the-middle" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="davinci-002", prompt="x")
    assert httpx.post(server.http + "/v1/completions", content=b"{nope").status_code == 400
    assert client.completions.create(model="pinky", prompt="x", max_tokens=1).choices[0].text == "<think>"
    assert "Traceback" not in server.log()


@pytest.mark.pinky
def test_a_client_that_leaves_stops_its_completion() -> None:
    # 200 tokens at 20 ms: 4 s of work each; requests queue FIFO, so the last one is quick only if the others stopped.
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            body = {"prompt": "x", "max_tokens": 200}
            with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
                lines = response.iter_lines()
                for _ in range(3):
                    next(lines)
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/completions", json=body, timeout=0.3)
            started = time.monotonic()
            assert http.post("/v1/completions", json={"prompt": "x", "max_tokens": 3}).status_code == 200
            assert time.monotonic() - started < 1.5, "an abandoned completion was still running"


@pytest.mark.pinky
def test_readme_completions_example_runs_against_a_pinky_server(server: LiveServer) -> None:
    assert "<think>Narf" in readme_output(server, "client.completions.create(")


def readme_output(server: LiveServer, marker: str) -> str:
    """What the README's python example with ``marker`` prints, run against ``server`` (Pinky)."""
    from tests.test_docs_and_cli import readme_block

    code = (
        readme_block(marker).replace("http://127.0.0.1:8080/v1", server.base_url).replace('"smollm2-135m"', '"pinky"')
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- the real engine ----------------------------------------------------------------------------------------------


@pytest.mark.real_engine
def test_smollm2_completes_the_capital_of_france_greedily() -> None:
    with live_server("--model", str(smollm2_path()), "--no-unload", "--threads", "2", timeout=120) as live:
        with openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0) as client:
            greedy: Any = {"model": SMOLLM2, "prompt": "The capital of France is", "max_tokens": 6}
            answer = client.completions.create(**greedy, temperature=0, logprobs=3)
            [choice] = answer.choices
            assert "Paris" in choice.text, choice.text
            lp = choice.logprobs
            assert lp is not None and lp.tokens is not None and "".join(lp.tokens) == choice.text
            assert lp.top_logprobs is not None and lp.token_logprobs is not None
            for top, logprob in zip(lp.top_logprobs, lp.token_logprobs, strict=True):
                assert top is not None and logprob is not None and len(top) == 3 and logprob == max(top.values())
            streamed = "".join(
                c.choices[0].text for c in client.completions.create(**greedy, temperature=0, stream=True) if c.choices
            )
            assert streamed == choice.text
        refused = httpx.post(live.http + "/v1/completions", json={"prompt": "def f():", "suffix": "return 1"})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "suffix"
        assert json.loads(httpx.get(live.http + "/health").text)["status"] == "ok"
