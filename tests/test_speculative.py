"""Speculative decoding by prompt lookup (issue 20): ``Brain(spec_type="ngram-simple")`` and ``--spec-type``.

The promise is the same answer, faster where the answer repeats the prompt: greedy output is compared token for token
with and without drafts on the real model (plain, one request after another, two at once, constrained by a JSON
schema, ended by max_tokens or a stop string in the middle of a draft), and the drafts are shown to be used
(``usage.draft_tokens`` / ``accepted_draft_tokens``, and OpenAI's ``accepted_prediction_tokens`` through the official
client). Speed is measured by the benchmark (benchmarks/ceiling.py), never asserted here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from openai import OpenAI
from rusty_genius import Brain, ConfigError, Genius, InferenceConfig
from rusty_genius.ogenius.cli import build_parser
from rusty_genius.ogenius.flags import brain_options

from tests.conftest import smollm2_path
from tests.servers import live_server

TEXT = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun all afternoon, and the fox runs back "
    "to the forest before the farmer comes home. The farmer counts his hens every evening and finds them all there."
)
EDIT = [
    {
        "role": "user",
        "content": f"Copy this text exactly, but write 'cat' instead of 'dog':\n\n{TEXT}",
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"animal": {"type": "string", "maxLength": 24}, "place": {"type": "string", "maxLength": 24}},
    "required": ["animal", "place"],
    "additionalProperties": False,
}


def brain(spec: str, **options: Any) -> Brain:
    """Without the KV store: a conversation restored from an earlier test would make the two runs' caches differ, and
    llama.cpp's arithmetic over a different cache can change a greedy answer with or without drafts."""
    return Brain(
        model_path=smollm2_path(),
        threads=2,
        context_size=1024,
        parallel=2,
        spec_type=spec,  # type: ignore[arg-type]
        kv_store=False,
        **options,
    )


def complete(g: Genius, messages: list[dict[str, Any]], response_format: Any = None, **config: Any) -> tuple[str, Any]:
    events = list(g.chat(messages, InferenceConfig.of(temperature=0, **config), response_format=response_format))
    assert events[-1].kind == "complete", [e.kind for e in events]
    return "".join(e.text or "" for e in events if e.kind == "content"), events[-1].usage


REQUESTS: list[tuple[list[dict[str, Any]], dict[str, Any]]] = [
    (EDIT, {"max_tokens": 96}),
    (EDIT, {"max_tokens": 37}),  # ends inside a draft
    (EDIT, {"max_tokens": 96, "stop": ["forest"]}),  # a stop string inside a draft
    ([{"role": "user", "content": f"{TEXT}\n\nWhich animal sleeps, and where? Answer in JSON."}], {"max_tokens": 48}),
]


@pytest.fixture(scope="module")
def plain_answers() -> list[tuple[str, Any]]:
    with Genius(engine=brain("none")) as g:
        return [complete(g, messages, **config) for messages, config in REQUESTS]


@pytest.mark.real_engine
def test_greedy_answers_are_the_same_with_drafts_and_drafts_are_kept(plain_answers: list[tuple[str, Any]]) -> None:
    with Genius(engine=brain("ngram-simple")) as g:
        drafted = [complete(g, messages, **config) for messages, config in REQUESTS]
    for (plain, plain_usage), (text, usage) in zip(plain_answers, drafted, strict=True):
        assert text == plain
        assert usage.completion_tokens == plain_usage.completion_tokens
        assert plain_usage.draft_tokens == 0 and plain_usage.accepted_draft_tokens == 0
        assert 0 <= usage.accepted_draft_tokens <= usage.draft_tokens
    edit_usage = drafted[0][1]
    # Copying the prompt is what prompt lookup is for: most of the answer comes from drafts.
    assert edit_usage.accepted_draft_tokens > edit_usage.completion_tokens // 3, edit_usage
    assert drafted[1][1].completion_tokens == 37
    assert "forest" not in drafted[2][0]


@pytest.mark.real_engine
@pytest.mark.anyio
async def test_two_requests_at_once_both_draft_and_answer_as_alone(plain_answers: list[tuple[str, Any]]) -> None:
    """Two copy-and-edit requests generating at once (both draft: the batch holds two tokens and two drafts).
    Copying has wide margins between the likeliest tokens; for open questions, two sequences in one batch can
    themselves change a greedy answer against one run alone, with or without drafts (llama.cpp's arithmetic over a
    different batch), so those are compared one at a time above."""

    async def one(g: Genius, messages: list[dict[str, Any]], config: dict[str, Any]) -> tuple[str, Any]:
        parts, usage = [], None
        async for event in g.chat(messages, InferenceConfig.of(temperature=0, **config)):
            if event.kind == "content":
                parts.append(event.text or "")
            elif event.kind == "complete":
                usage = event.usage
        return "".join(parts), usage

    async with Genius(engine=brain("ngram-simple")) as g:
        both = await asyncio.gather(one(g, *REQUESTS[0]), one(g, *REQUESTS[2]))
    assert [text for text, _ in both] == [plain_answers[0][0], plain_answers[2][0]]
    assert all(usage.accepted_draft_tokens > 0 for _, usage in both), both


@pytest.mark.real_engine
def test_a_schema_constrained_answer_is_the_same_and_valid() -> None:
    messages = REQUESTS[3][0]
    answers = []
    for spec in ("none", "ngram-simple"):
        with Genius(engine=brain(spec)) as g:
            fmt = {"type": "json_schema", "json_schema": {"name": "where", "schema": SCHEMA}}
            answers.append(complete(g, messages, response_format=fmt, max_tokens=64)[0])
    assert answers[0] == answers[1]
    jsonschema.validate(json.loads(answers[1]), SCHEMA)


@pytest.mark.real_engine
def test_the_server_reports_predicted_tokens_to_the_openai_client() -> None:
    with live_server(
        "--model", str(smollm2_path()), "--threads", "2", "--context-size", "1024", "--parallel", "1",
        "--spec-type", "ngram-simple", "--draft-max", "8", timeout=120,
    ) as server:  # fmt: skip
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
        reply = client.chat.completions.create(
            model=client.models.list().data[0].id,
            messages=EDIT,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=64,
        )
    usage = reply.usage
    assert usage is not None and usage.completion_tokens_details is not None
    details = usage.completion_tokens_details
    assert details.accepted_prediction_tokens and details.accepted_prediction_tokens > 0, usage
    assert details.rejected_prediction_tokens is not None and details.rejected_prediction_tokens >= 0
    assert reply.choices[0].message.content


@pytest.mark.pinky
def test_the_flags_reach_the_brain_and_bad_values_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    options = brain_options(build_parser().parse_args(["serve", "--spec-type", "ngram-simple", "--draft-max", "8"]))
    assert (options["spec_type"], options["draft_max"]) == ("ngram-simple", 8)
    assert "spec_type" not in brain_options(build_parser().parse_args(["serve"]))
    for argv, flag in ((["--spec-type", "eagle"], "--spec-type"), (["--draft-max", "500"], "--draft-max")):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["serve", *argv])
        assert exit_info.value.code == 2
        assert flag in capsys.readouterr().err


@pytest.mark.real_engine
@pytest.mark.parametrize(
    ("options", "field"), [({"spec_type": "eagle"}, "spec_type"), ({"draft_max": 500}, "draft_max")]
)
def test_a_bad_spec_type_or_draft_length_is_a_config_error_naming_it(options: dict[str, Any], field: str) -> None:
    bad = Brain(model_path=smollm2_path(), threads=2, **options)
    with pytest.raises(ConfigError) as raised, Genius(engine=bad) as g:
        list(g.chat(EDIT, InferenceConfig.of(max_tokens=2)))
    assert raised.value.field == field


@pytest.mark.real_engine
def test_a_draft_model_gives_the_same_answers_and_its_guesses_are_kept(plain_answers: list[tuple[str, Any]]) -> None:
    """The test model drafting for itself: every guess it is sure of is the model's own pick, so drafts are kept, and
    the answers are those without drafts. (A smaller model of the same family is the real use; there is none here.)"""
    with Genius(engine=brain("none", draft_model=smollm2_path())) as g:
        drafted = [complete(g, messages, **config) for messages, config in REQUESTS]
    for (plain, _), (text, usage) in zip(plain_answers, drafted, strict=True):
        assert text == plain
        assert 0 <= usage.accepted_draft_tokens <= usage.draft_tokens
    usage = drafted[0][1]
    assert usage.draft_tokens > 0 and usage.accepted_draft_tokens >= usage.draft_tokens * 9 // 10, usage


@pytest.mark.real_engine
@pytest.mark.parametrize(
    ("options", "named"),
    [({"spec_type": "draft"}, "spec_type = draft"), ({"spec_type": "ngram-simple", "draft_model": "x.gguf"}, "x.gguf")],
)
def test_a_draft_model_goes_with_spec_type_draft_only(options: dict[str, Any], named: str) -> None:
    bad = Brain(model_path=smollm2_path(), threads=2, **options)
    with pytest.raises(ConfigError) as raised, Genius(engine=bad) as g:
        list(g.chat(EDIT, InferenceConfig.of(max_tokens=2)))
    assert raised.value.field == "draft_model"
    assert named in str(raised.value)


@pytest.mark.pinky
def test_model_draft_flag_reaches_the_brain() -> None:
    args = build_parser().parse_args(["serve", "-md", "small.gguf", "--draft-max", "4"])
    options = brain_options(args)
    assert (options["draft_model"], options["draft_max"]) == ("small.gguf", 4)
    assert Brain(model_path="m.gguf", **options).draft_model == "small.gguf"
