"""The engine's other abilities on the real engine (SmolLM2-135M and two variants of it): raw completions, fill in
the middle, embeddings (a chat model's, mean-pooled, and the same GGUF marked as an embedding model), tokens and
the chat template; and embeddings made while a chat runs leave its answer unchanged. Greedy and short throughout."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rusty_genius import Brain, Genius, RequestError

from tests.conftest import smollm2_path
from tests.ggufvariants import VARIANTS, with_numbers

pytestmark = [pytest.mark.real_engine, pytest.mark.anyio]

FIM = {
    "tokenizer.ggml.fim_pre_token_id": 7,
    "tokenizer.ggml.fim_suf_token_id": 8,
    "tokenizer.ggml.fim_mid_token_id": 9,
}
"""SmolLM2 has no FIM tokens: the variant names three of its unused special tokens as such (the answer means
nothing; the prompt's layout is what is checked)."""
MEAN_POOLED = {"llama.pooling_type": 1}
"""The same weights marked as an embedding model, mean-pooled."""
CAT, CAT2, STOCKS = "The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."
USER = [{"role": "user", "content": "Which city is the capital of France?"}]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def brain(path: Path, parallel: int = 1) -> Brain:
    return Brain(model_path=path, threads=2, context_size=1024, parallel=parallel)


@pytest.fixture
async def smol() -> AsyncIterator[Genius]:
    async with Genius(engine=brain(smollm2_path())) as g:
        yield g


async def test_a_raw_completion_continues_the_text(smol: Genius) -> None:
    events = [e async for e in smol.generate("The capital of France is", max_tokens=4, temperature=0)]
    assert "Paris" in "".join(e.text or "" for e in events if e.kind == "content")
    end = events[-1]
    assert end.usage is not None and end.usage.prompt_tokens == len(await smol.tokenize("The capital of France is"))


async def test_an_empty_raw_prompt_is_refused_and_the_engine_carries_on(smol: Genius) -> None:
    with pytest.raises(RequestError, match="prompt is empty"):
        async for _ in smol.generate(""):
            pass
    assert (await smol.complete(USER, max_tokens=2, temperature=0)).content


async def test_the_template_is_what_chat_gives_the_model(smol: Genius) -> None:
    prompt = await smol.apply_template(USER)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    answer = await smol.complete(USER, max_tokens=1, temperature=0)
    assert answer.usage.prompt_tokens == len(await smol.tokenize(prompt))


async def test_count_tokens_is_the_prompt_usage_of_the_same_request_with_tools(smol: Genius) -> None:
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    for kwargs in ({}, {"tools": [tool]}, {"tools": [tool], "tool_choice": "required"}):
        counted = await smol.count_tokens(USER, **kwargs)
        answer = await smol.complete(USER, max_tokens=1, temperature=0, **kwargs)
        assert counted == answer.usage.prompt_tokens, kwargs


async def test_tokens_round_trip(smol: Genius) -> None:
    ids = await smol.tokenize("Hello world", add_special=False)
    assert await smol.detokenize(ids) == "Hello world"
    assert b"".join(await smol.token_pieces(ids)) == b"Hello world"
    assert await smol.tokenize("<|im_start|>", add_special=False) == [1]
    assert len(await smol.tokenize("<|im_start|>", add_special=False, parse_special=False)) > 1
    info = await smol.model_info()
    with pytest.raises(RequestError, match=str(info.vocab_size)):
        await smol.detokenize([info.vocab_size])


async def test_embeddings_place_a_paraphrase_nearer_than_an_unrelated_sentence(smol: Genius) -> None:
    info = await smol.model_info()
    assert (info.embedding_size, info.pooling, info.embedding_only) == (576, "mean", False)
    result = await smol.embed([CAT, CAT2, STOCKS, CAT])
    assert all(len(v) == 576 and math.isclose(cosine(v, v), 1.0, rel_tol=1e-4) for v in result)
    assert cosine(result[0], result[3]) > 0.9999
    assert cosine(result[0], result[1]) > cosine(result[0], result[2])
    assert result.prompt_tokens == sum([len(await smol.tokenize(t)) for t in (CAT, CAT2, STOCKS, CAT)])


async def test_fill_in_the_middle_puts_prefix_and_suffix_between_the_fim_tokens() -> None:
    async with Genius(engine=brain(with_numbers(smollm2_path(), VARIANTS, FIM))) as g:
        assert (await g.model_info()).fill_in_middle
        prefix, suffix = "def add(a, b):\n", "\n    return c\n"
        events = [e async for e in g.generate(prefix, suffix=suffix, max_tokens=3, temperature=0)]
        end = events[-1]
        assert end.kind == "complete" and end.usage is not None
        pieces = [await g.tokenize(t, add_special=False, parse_special=False) for t in (prefix, suffix)]
        assert end.usage.prompt_tokens == 3 + sum(map(len, pieces))


async def test_an_embedding_model_embeds_as_the_chat_model_does_and_refuses_chat(smol: Genius) -> None:
    chat_model = await smol.embed([CAT, STOCKS])
    async with Genius(engine=brain(with_numbers(smollm2_path(), VARIANTS, MEAN_POOLED))) as g:
        info = await g.model_info()
        assert info.embedding_only and info.pooling == "mean"
        embedded = await g.embed([CAT, STOCKS])
        with pytest.raises(RequestError, match="embedding model"):
            await g.complete(USER, max_tokens=2)
    for a, b in zip(chat_model, embedded, strict=True):
        assert cosine(a, b) > 0.9999


async def test_embeddings_made_during_a_chat_leave_its_answer_unchanged() -> None:
    async with Genius(engine=brain(smollm2_path(), parallel=2)) as g:
        alone = await g.complete(USER, max_tokens=24, temperature=0)

        async def embed_meanwhile() -> None:
            for _ in range(4):
                await g.embed([CAT, CAT2, STOCKS] * 6)

        beside, _ = await asyncio.gather(g.complete(USER, max_tokens=24, temperature=0), embed_meanwhile())
    assert beside.content == alone.content and alone.content
