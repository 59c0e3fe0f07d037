"""OpenAI's ``/v1/embeddings``: the official openai client, unchanged, against a live ``ogenius serve`` on Pinky (floats
and the client's default base64, ``dimensions``, batches, token ids, the 400s), and on SmolLM2 that the vectors mean
something: the same text gives the same vector, a paraphrase is closer than an unrelated sentence."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import smollm2_path
from tests.servers import LiveServer, live_server
from tests.test_serve_completions import readme_output, refused_400

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0") as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
        yield c


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.pinky
def test_floats_and_the_clients_default_base64_give_the_same_unit_vectors(client: openai.OpenAI) -> None:
    texts = ["The cat sits on the mat.", "A dog barks.", "the CAT sits"]
    floats = client.embeddings.create(model="pinky", input=texts, encoding_format="float")
    assert floats.object == "list" and floats.model == "pinky"
    assert [(d.object, d.index) for d in floats.data] == [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    vectors = [d.embedding for d in floats.data]
    assert all(len(v) == 64 and math.isclose(math.hypot(*v), 1.0, rel_tol=1e-5) for v in vectors)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    assert cosine(vectors[0], vectors[2]) > cosine(vectors[0], vectors[1]), "Pinky's bags of words share words"

    default = client.embeddings.create(model="pinky", input=texts)  # the client asks for base64 and decodes it
    assert [[round(x, 6) for x in d.embedding] for d in default.data] == [[round(x, 6) for x in v] for v in vectors]


@pytest.mark.pinky
def test_base64_is_little_endian_float32(server: LiveServer) -> None:
    body = {"input": "The cat", "encoding_format": "base64"}
    [item] = httpx.post(server.http + "/v1/embeddings", json=body).json()["data"]
    raw = base64.b64decode(item["embedding"])
    floats = httpx.post(server.http + "/embeddings", json={"input": "The cat"}).json()["data"][0]["embedding"]
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats, abs=1e-7)


@pytest.mark.pinky
def test_dimensions_token_ids_and_single_inputs(client: openai.OpenAI) -> None:
    text = "cat hat bat rat mat sat pat fat vat gnat"
    short = client.embeddings.create(model="pinky", input=text, dimensions=16).data[0].embedding
    assert len(short) == 16 and math.isclose(math.hypot(*short), 1.0, rel_tol=1e-5)
    whole = client.embeddings.create(model="pinky", input=text, encoding_format="float").data[0].embedding
    by_ids = client.embeddings.create(model="pinky", input=list(text.encode()), encoding_format="float")
    assert by_ids.data[0].embedding == pytest.approx(whole), "Pinky's tokens are bytes"
    batch = client.embeddings.create(model="pinky", input=[list(b"cat"), list(b"dog")], encoding_format="float")
    assert len(batch.data) == 2 and batch.usage.prompt_tokens == 6
    many = client.embeddings.create(model="pinky", input=[f"text {i}" for i in range(100)], user="someone")
    assert [d.index for d in many.data] == list(range(100)), "several engine calls, in order"


BAD: list[tuple[dict[str, Any], str]] = [
    ({}, "input"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": ["a", ""]}, "input[1]"),
    ({"input": ["a", []]}, "input[1]"),
    ({"input": ["a", 5]}, "input[1]"),
    ({"input": [[1], [-1]]}, "input[1]"),
    ({"input": [1, -1]}, "input"),
    ({"input": ["a"] * 40 + [[999]]}, "input[40]"),
    ({"input": ["a"] * 2049}, "input"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a", "dimensions": "8"}, "dimensions"),
    ({"input": "a", "dimensions": 65}, "dimensions"),
    ({"input": "a", "user": 3}, "user"),
    ({"input": "a", "model": 3}, "model"),
    ({"input": "a", "keep_alive": "soon"}, "keep_alive"),
]


@pytest.mark.pinky
@pytest.mark.parametrize(("body", "param"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_400_naming_the_field(server: LiveServer, body: dict[str, Any], param: str) -> None:
    error = refused_400(server, "/v1/embeddings", body, param)
    assert param.split("[")[0] in error["message"], error


@pytest.mark.pinky
def test_the_sdk_raises_and_the_server_keeps_serving(client: openai.OpenAI, server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="pinky", input=["ok", ""])
    assert refused.value.param == "input[1]"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert httpx.post(server.http + "/v1/embeddings", content=b"[1]").status_code == 400
    assert len(client.embeddings.create(model="pinky", input="still here").data) == 1
    assert "Traceback" not in server.log()


@pytest.mark.pinky
def test_readme_embeddings_example_runs_against_a_pinky_server(server: LiveServer) -> None:
    width, similarity = readme_output(server, "client.embeddings.create(").split()
    assert width == "64" and 0 < float(similarity) < 1


# -- the real engine ----------------------------------------------------------------------------------------------


@pytest.mark.real_engine
def test_smollm2_embeddings_put_a_paraphrase_closer_than_an_unrelated_sentence() -> None:
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."]
    with live_server("--model", str(smollm2_path()), "--no-unload", "--threads", "2", timeout=120) as live:
        with openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0) as client:
            got = client.embeddings.create(model=SMOLLM2, input=[*texts, texts[0]]).data
            cat, paraphrase, stocks, again = (d.embedding for d in got)
            assert len(cat) == 576
            assert cosine(cat, again) == pytest.approx(1.0, abs=1e-5), "the same text, the same vector"
            assert cosine(cat, paraphrase) > cosine(cat, stocks)
            short = client.embeddings.create(model=SMOLLM2, input=texts[0], dimensions=64).data[0].embedding
            assert len(short) == 64 and math.isclose(math.hypot(*short), 1.0, rel_tol=1e-4)
