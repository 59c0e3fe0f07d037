"""The engine's other abilities through the facade, on Pinky: raw completions (``Genius.generate``), embeddings,
tokens and templates; their errors name what was wrong. (The real engine: test_engine_calls_real.py.)"""

from __future__ import annotations

import math

import pytest
import rusty_genius
from rusty_genius import ConfigError, Genius, Pinky, RequestError

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_generate_streams_plain_content_with_usage(fast_genius: Genius) -> None:
    events = [e async for e in fast_genius.generate("once upon a time", max_tokens=5)]
    kinds = {e.kind for e in events}
    assert "thought_delta" not in kinds and "thought_start" not in kinds
    text = "".join(e.text or "" for e in events if e.kind == "content")
    assert text == "<think>Narf! Poit!"  # Pinky's script, unparsed: a raw completion has no thoughts
    end = events[-1]
    assert end.kind == "complete" and end.finish_reason == "length"
    assert end.usage is not None and end.usage.prompt_tokens == 4


async def test_generate_with_a_suffix_on_a_model_without_fim_tokens_says_so(fast_genius: Genius) -> None:
    assert not (await fast_genius.model_info()).fill_in_middle
    with pytest.raises(RequestError, match="suffix"):
        async for _ in fast_genius.generate("def f(", suffix=")"):
            pass


async def test_embed_gives_one_unit_vector_per_input_and_counts_tokens(fast_genius: Genius) -> None:
    result = await fast_genius.embed(["the cat sat", "the cat sat", "stocks fell"])
    assert isinstance(result, rusty_genius.Embeddings) and len(result) == 3
    assert result.prompt_tokens == len("the cat sat") * 2 + len("stocks fell")  # Pinky's tokens are bytes
    assert [len(v) for v in result] == [64] * 3
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in result)
    assert result[0] == result[1] and cosine(result[0], result[2]) < 0.99
    one = await fast_genius.embed("the cat sat")
    assert one.vectors == [result[0]]


async def test_embed_takes_token_ids_and_truncates_to_dimensions(fast_genius: Genius) -> None:
    ids = await fast_genius.tokenize("the cat sat")
    inputs: list[str | list[int]] = [ids, "the cat sat"]
    by_ids = await fast_genius.embed(inputs)
    assert by_ids[0] == by_ids[1]
    many = "the quick brown fox jumps over the lazy dog while seven cats watch"
    short = await fast_genius.embed(many, dimensions=16)
    assert len(short[0]) == 16 and math.isclose(cosine(short[0], short[0]), 1.0, rel_tol=1e-5)
    raw = await fast_genius.embed("the cat sat", normalize=False)
    assert max(abs(x) for x in raw[0]) >= 1.0  # counts, not unit length


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "empty"),
        (["ok", ""], r"input\[1\] is empty"),
        ([[1, 300]], "300"),
        ([3.5], r"input\[0\]"),
        (b"x", "must be a text"),
    ],
)
async def test_bad_embedding_inputs_name_the_input(fast_genius: Genius, inputs: object, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        await fast_genius.embed(inputs)  # type: ignore[arg-type]


async def test_embed_over_the_window_names_the_input(fast_genius: Genius) -> None:
    with pytest.raises(RequestError, match=r"input\[1\] is 5000 tokens, over the model's window of 4096"):
        await fast_genius.embed(["fine", "x" * 5000])


@pytest.mark.parametrize("dimensions", [0, 65, True, "8"])
async def test_bad_dimensions_is_a_config_error(fast_genius: Genius, dimensions: object) -> None:
    with pytest.raises(ConfigError) as err:
        await fast_genius.embed("x", dimensions=dimensions)  # type: ignore[arg-type]
    assert err.value.field == "dimensions"


async def test_tokenize_detokenize_and_pieces_round_trip(fast_genius: Genius) -> None:
    ids = await fast_genius.tokenize("héllo")
    assert ids == list("héllo".encode())
    assert await fast_genius.detokenize(ids) == "héllo"
    assert b"".join(await fast_genius.token_pieces(ids)) == "héllo".encode()
    with pytest.raises(RequestError, match="token ids"):
        await fast_genius.detokenize(["a"])  # type: ignore[list-item]
    with pytest.raises(RequestError, match="999"):
        await fast_genius.detokenize([999])


async def test_apply_template_renders_tools_and_the_open_assistant_turn(fast_genius: Genius) -> None:
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    prompt = await fast_genius.apply_template([{"role": "user", "content": "hi"}], tools=[tool])
    assert "get_time" in prompt and prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


async def test_count_tokens_is_the_prompt_usage(fast_genius: Genius) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "are you pondering it"}]
    answer = await fast_genius.complete(messages, max_tokens=1)
    assert await fast_genius.count_tokens(messages) == answer.usage.prompt_tokens == 6


async def test_model_info_reports_pinkys_sizes(fast_genius: Genius) -> None:
    info = await fast_genius.model_info()
    assert (info.context_size, info.vocab_size, info.embedding_size, info.pooling) == (4096, 256, 64, "mean")
    assert not info.embedding_only


async def test_embedding_calls_do_not_stop_a_running_chat() -> None:
    async with Genius(engine=Pinky(delay=0.01, reply_tokens=40, parallel=2)) as g:
        stream = g.chat([{"role": "user", "content": "hi"}])
        first = await stream.__anext__()
        for _ in range(5):
            await g.embed([f"text {i}" for i in range(40)])
        rest = [e async for e in stream]
    assert first.kind == "process_start"
    assert rest[-1].kind == "complete" and rest[-1].finish_reason == "stop"
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens > 40


def test_blocking_forms_work_in_a_plain_context_manager() -> None:
    with Genius(engine=Pinky(delay=0)) as g:
        assert g.tokenize_sync("ab") == [97, 98]
        assert len(g.embed_sync(["a", "b"], dimensions=4)[1]) == 4
