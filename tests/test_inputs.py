"""Bad input gets a clear error naming what was wrong; every error is a GeniusError."""

from __future__ import annotations

from typing import Any

import pytest
import rusty_genius
from rusty_genius import Behavior, ConfigError, InferenceConfig, RequestError, Sampling

from tests.conftest import USER

pytestmark = pytest.mark.pinky


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Sampling(temperature=-1), "temperature"),
        (lambda: Sampling(temperature=float("nan")), "temperature"),
        (lambda: Sampling(top_p=0), "top_p"),
        (lambda: Sampling(min_p=2), "min_p"),
        (lambda: Sampling(top_k=-1), "top_k"),
        (lambda: Sampling(repeat_penalty=0), "repeat_penalty"),
        (lambda: Sampling(presence_penalty=5), "presence_penalty"),
        (lambda: Sampling(seed=2**40), "seed"),
        (lambda: Sampling(temperature="hot"), "temperature"),  # type: ignore[arg-type]
        (lambda: Behavior(max_tokens=0), "max_tokens"),
        (lambda: Behavior(max_tokens=-5), "max_tokens"),
        (lambda: Behavior(context_size=4), "context_size"),
        (lambda: Behavior(stop=[""]), "stop"),
        (lambda: Behavior(stop=["x"] * 17), "stop"),
        (lambda: InferenceConfig.of(temprature=0.5), "temprature"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(make: Any, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as refused:
        make()
    assert refused.value.field == field, "the field is data on the error, not only words in its message"


def test_good_settings_round_trip() -> None:
    config = InferenceConfig.of(max_tokens=5, stop="END", temperature=0, seed=7, show_thinking=False)
    assert config.behavior == Behavior(max_tokens=5, stop=("END",), show_thinking=False)
    assert config.sampling.temperature == 0 and config.sampling.seed == 7


@pytest.mark.parametrize(
    ("messages", "pattern"),
    [
        ("hi", "not a string"),
        ([], "messages is empty"),
        ([{"role": "wizard", "content": "x"}], r"messages\[0\]: unknown role 'wizard'"),
        ([USER[0], {"role": "user"}], r"messages\[1\]: has no 'content'"),
        ([{"role": "user", "content": 3}], r"messages\[0\]: 'content' must be a str, not int"),
        (["hi"], r"messages\[0\]: must be a dict"),
        (42, "must be a list"),
    ],
)
def test_bad_messages_raise_request_error(messages: Any, pattern: str) -> None:
    with rusty_genius.Genius() as g:
        with pytest.raises(RequestError, match=pattern):
            g.chat(messages)
        # The engine is unharmed.
        assert [ev.kind for ev in g.chat(USER, InferenceConfig.of(max_tokens=1))][-1] == "complete"


def test_a_config_of_the_wrong_type_is_refused() -> None:
    with rusty_genius.Genius() as g, pytest.raises(ConfigError, match="InferenceConfig, not int") as refused:
        g.chat(USER, 42)  # type: ignore[arg-type]
    assert refused.value.field is None, "not one setting: the whole config"


def test_bad_engine_settings() -> None:
    with pytest.raises(ConfigError, match="unknown model 'llama'"):
        rusty_genius.Genius(engine="llama").start_sync()
    with pytest.raises(ConfigError, match="delay") as refused:
        rusty_genius.Genius(engine=rusty_genius.Pinky(delay=-1)).start_sync()
    assert refused.value.field == "delay"
    with pytest.raises(ConfigError, match=r"script\[1\]") as refused:
        rusty_genius.Genius(engine=rusty_genius.Pinky(script=["ok", 3])).start_sync()  # type: ignore[list-item]
    assert refused.value.field == "script"
    with pytest.raises(ConfigError, match="parallel") as refused:
        rusty_genius.Genius(engine=rusty_genius.Pinky(parallel=0)).start_sync()
    assert refused.value.field == "parallel", "an option the engine checks (cortex's InvalidConfig) keeps its field"


def test_every_error_is_a_genius_error() -> None:
    for cls in (
        rusty_genius.ConfigError,
        rusty_genius.RequestError,
        rusty_genius.EngineError,
        rusty_genius.EngineClosedError,
    ):
        assert issubclass(cls, rusty_genius.GeniusError)
    assert issubclass(rusty_genius.EngineClosedError, rusty_genius.EngineError)
    assert rusty_genius.GeniusError.__module__ == "rusty_genius"
