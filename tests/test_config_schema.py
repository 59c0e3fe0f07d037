"""The one config schema: the metadata on the dataclass fields agrees with the engine's check at every bound, the
front ends (flags, /set, the server) are derived from it, and every entry point sends the engine the same complete
default config whether or not a setting was given."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from rusty_genius import Behavior, ConfigError, Genius, InferenceConfig, Output, Pinky, Reasoning, Sampling
from rusty_genius.brainstem.protocol import Infer
from rusty_genius.core.config import CONVERSATION, SETTINGS, TUNABLE, U32_MAX, Range
from rusty_genius.ogenius import flags
from rusty_genius.ogenius.serve.openai_api import api_error_of, parse_chat
from rusty_genius.ogenius.session import HELP, Session

from tests.conftest import USER

pytestmark = pytest.mark.pinky


# -- the metadata agrees with the engine's check ----------------------------------------------------------------


def _outside(bound: float, kind: type, direction: int) -> float:
    """Just past ``bound`` (``direction`` -1: below, +1: above), by a step the engine's f32 still tells apart."""
    return bound + direction * (1 if kind is int else 1e-3 * max(1.0, abs(bound)))


def _probes() -> list[tuple[str, Any, bool]]:
    """(setting, value, accepted): each bound of each range (accepted per its open/closed end), just inside and
    just outside it, the integers' u32 limit, non-finite numbers and None."""
    probes: list[tuple[str, Any, bool]] = []
    for s in SETTINGS.values():
        if not s.numeric:
            continue
        r = s.range
        assert r is not None, f"{s.name}: a number needs a range"
        kind = s.kind
        if r.low is not None:
            low = kind(r.low)
            probes += [(s.name, low, not r.low_open), (s.name, kind(_outside(low, kind, -1)), False)]
            probes.append((s.name, kind(_outside(low, kind, +1)), True))
        if r.high is not None:
            high = kind(r.high)
            probes += [(s.name, high, not r.high_open), (s.name, kind(_outside(high, kind, +1)), False)]
            probes.append((s.name, kind(_outside(high, kind, -1)), True))
        if kind is int:
            probes += [(s.name, U32_MAX, r.high is None or r.high >= U32_MAX), (s.name, U32_MAX + 1, False)]
        else:
            probes += [(s.name, math.nan, False), (s.name, math.inf, False), (s.name, -math.inf, False)]
        probes.append((s.name, None, s.nullable))
    return probes


PROBES = _probes()


@pytest.mark.parametrize(("name", "value", "accepted"), PROBES, ids=[f"{n}={v}" for n, v, _ in PROBES])
def test_the_schema_ranges_are_the_engines_at_every_bound(name: str, value: Any, accepted: bool) -> None:
    setting = SETTINGS[name]
    # Python's description of the range (what the CLI refuses early) ...
    if value is not None and setting.range is not None and math.isfinite(value) and value <= U32_MAX:
        assert (value in setting.range) is accepted
    try:
        setting.check(value)
        described = True
    except ConfigError as err:
        assert err.field == name
        described = False
    assert described is accepted, f"{name}={value!r}: the schema says {'refused' if accepted else 'accepted'}"
    # ... and the engine's check, through construction (Behavior/Sampling call _native.validate_*).
    if accepted:
        made = setting.owner(**{name: value})
        assert getattr(made, name) == value
    else:
        with pytest.raises(ConfigError, match=name) as refused:
            setting.owner(**{name: value})
        assert refused.value.field == name


def test_the_schema_describes_every_field_with_its_default() -> None:
    fields = [f.name for owner in (Behavior, Sampling, Reasoning) for f in dataclasses.fields(owner)]
    assert list(SETTINGS) == fields
    for s in SETTINGS.values():
        assert s.default == getattr(s.owner(), s.name)
        assert s.help and "default" not in s.help
        assert s.owner(**{s.name: s.default}) == s.owner()
    assert SETTINGS["top_p"].range == Range(0, 1, low_open=True) and str(SETTINGS["top_p"].range) == "(0, 1]"
    assert SETTINGS["seed"].nullable and SETTINGS["seed"].default_text == "random"
    assert [s.name for s in TUNABLE] == [
        "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "seed",
        "max_tokens", "thinking_budget",
    ]  # fmt: skip
    assert SETTINGS["reasoning_effort"].choices == ("low", "medium", "high")
    assert SETTINGS["enable_thinking"].nullable and SETTINGS["enable_thinking"].kind is bool
    assert SETTINGS["logit_bias"].kind is dict and not SETTINGS["logit_bias"].tunable


@pytest.mark.parametrize(
    ("value", "stored"),
    [({}, {}), ({42: -100, 7: 2.5}, {7: 2.5, 42: -100.0}), ({"42": 1}, {42: 1.0}), ([(3, 1)], {3: 1.0}),
     ({0: 100.0}, {0: 100.0})],
)  # fmt: skip
def test_logit_bias_is_stored_immutable_and_hashable(value: Any, stored: dict[int, float]) -> None:
    import copy
    import pickle

    sampling = Sampling(logit_bias=value)
    assert sampling.logit_bias == stored and list(sampling.logit_bias) == sorted(stored)
    assert hash(sampling) == hash(Sampling(logit_bias=stored)) and sampling == Sampling(logit_bias=stored)
    assert pickle.loads(pickle.dumps(sampling)) == sampling and copy.deepcopy(sampling) == sampling
    assert dataclasses.asdict(sampling)["logit_bias"] == stored
    with pytest.raises(TypeError):
        sampling.logit_bias[1] = 2.0  # type: ignore[index]
    assert SETTINGS["logit_bias"].check(value) == stored
    assert InferenceConfig.of(logit_bias=value).sampling.logit_bias == stored


@pytest.mark.parametrize(
    ("value", "message"),
    [({-1: 1}, "token ids are 0 or more"), ({3: 100.5}, "must be between -100 and 100"),
     ({3: math.nan}, "must be between -100 and 100"), ({3: -math.inf}, "must be between -100 and 100"),
     ({2**31: 1}, "too large"), (dict.fromkeys(range(1025), 1), "at most 1024"), ({"x": 1}, "not an integer"),
     ({3: "1"}, "must be a number"), ({True: 1}, "not an integer"), ("42", "is not accepted"), (7, "not accepted")],
)  # fmt: skip
def test_logit_bias_is_checked_by_the_engine_naming_the_field(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        Sampling(logit_bias=value)
    assert refused.value.field == "logit_bias"


@pytest.mark.parametrize("value", ["low", "medium", "high", "extreme", "LOW", "", None])
def test_the_schema_choices_are_the_engines(value: str | None) -> None:
    setting = SETTINGS["reasoning_effort"]
    accepted = value is None or value in setting.choices
    if accepted:
        assert setting.check(value) == value
        assert Reasoning(reasoning_effort=value).reasoning_effort == value
        return
    with pytest.raises(ConfigError, match="must be 'low', 'medium' or 'high'") as described:
        setting.check(value)
    assert described.value.field == "reasoning_effort"
    with pytest.raises(ConfigError, match="reasoning_effort") as refused:
        Reasoning(reasoning_effort=value)
    assert refused.value.field == "reasoning_effort"


def test_reasoning_settings_are_flat_settings_of_the_config() -> None:
    config = InferenceConfig.of(enable_thinking=False, reasoning_effort="high", thinking_budget=64, max_tokens=9)
    assert config.reasoning == Reasoning(enable_thinking=False, reasoning_effort="high", thinking_budget=64)
    assert config.behavior.max_tokens == 9 and config.sampling == Sampling() and config.output == Output()
    assert [SETTINGS[n].value_in(config) for n in ("enable_thinking", "reasoning_effort", "thinking_budget")] == [
        False, "high", 64,
    ]  # fmt: skip
    assert config.updated(thinking_budget=None).reasoning.thinking_budget is None
    kept = dataclasses.replace(InferenceConfig(), output=Output(response_format="json_object"))
    assert kept.updated(temperature=0).output == kept.output, "output is not a flat setting: updated() keeps it"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("temperature", "0.2", 0.2),
        ("temperature", " 0 ", 0.0),
        ("top_k", "7", 7),
        ("seed", "none", None),
        ("max_tokens", "Default", None),
        ("max_tokens", "off", None),
        ("show_thinking", "yes", True),
        ("show_thinking", "off", False),
        ("stop", "END", ("END",)),
        ("grammar", "root ::= x", "root ::= x"),
        ("enable_thinking", "off", False),
        ("enable_thinking", "on", True),
        ("enable_thinking", "default", None),
        ("reasoning_effort", "high", "high"),
        ("reasoning_effort", "none", None),
        ("thinking_budget", "0", 0),
        ("thinking_budget", "off", None),
        ("logit_bias", '{"42": -100, "7": 1}', {7: 1.0, 42: -100.0}),
    ],
)
def test_parse_reads_a_settings_text(name: str, text: str, value: object) -> None:
    assert SETTINGS[name].parse(text) == value


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("temperature", "hot", "'hot' is not a number"),
        ("temperature", "nan", "'nan' is not a finite number"),
        ("top_k", "1.5", "'1.5' is not an integer"),
        ("top_p", "0", "0 is out of range: must be in (0, 1]"),
        ("max_tokens", "0", "0 is out of range: must be 1 or more, or none (no limit)"),
        ("top_k", str(U32_MAX + 1), "out of range"),
        ("temperature", "none", "'none' is not a number"),
        ("show_thinking", "maybe", "'maybe' is not true or false"),
        ("reasoning_effort", "max", "'max' is not accepted: must be 'low', 'medium' or 'high'"),
        ("thinking_budget", "-1", "-1 is out of range: must be 0 or more"),
        ("logit_bias", "42:-100", "'42:-100' is not a JSON object of token id to bias"),
        ("logit_bias", '{"x": 1}', "token id 'x' is not an integer"),
    ],
)
def test_parse_refuses_with_the_field(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as err:
        SETTINGS[name].parse(text)
    assert err.value.field == name


def test_an_unknown_setting_names_itself_as_the_field() -> None:
    with pytest.raises(ConfigError, match="unknown setting") as err:
        InferenceConfig().updated(temprature=0.5)
    assert err.value.field == "temprature"


# -- what is derived from it ------------------------------------------------------------------------------------


def _chat_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ogenius chat", exit_on_error=False)
    flags.add_inference_flags(parser)
    return parser


def test_every_conversation_setting_is_a_flag_with_its_range_and_default() -> None:
    parser = _chat_parser()
    text = parser.format_help()
    assert CONVERSATION[: len(TUNABLE)] == TUNABLE
    for s in CONVERSATION:
        assert s.flag in text
        assert s.default_text in text
    assert tuple(s.name for s in CONVERSATION) == flags.SAMPLING_FLAGS
    argv = "--top-p 1 --min-p 0 --presence-penalty -2 --seed none --thinking-budget 64"
    args = parser.parse_args([*argv.split(), "--enable-thinking", "off", "--reasoning-effort", "low"])
    assert flags.settings_of(args) == {
        "top_p": 1.0, "min_p": 0.0, "presence_penalty": -2.0, "thinking_budget": 64, "enable_thinking": False,
        "reasoning_effort": "low",
    }  # fmt: skip
    config = flags.config_of(args)
    assert config == InferenceConfig.of(
        top_p=1.0, min_p=0.0, presence_penalty=-2.0, thinking_budget=64, show_thinking=False, enable_thinking=False,
        reasoning_effort="low",
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["--top-p", "0"],
        ["--repeat-penalty", "0"],
        ["--min-p", "1.5"],
        ["--max-tokens", "0"],
        ["--seed", "-1"],
        ["--thinking-budget", "-1"],
    ],
)
def test_a_value_the_engine_refuses_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ogenius chat")
    flags.add_inference_flags(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}" in err and "out of range" in err, err


def test_set_keys_and_help_come_from_the_schema() -> None:
    for s in CONVERSATION:
        assert s.name in HELP
    session = Session()
    assert session.command("/set presence-penalty -2").text == "presence_penalty = -2.0"
    assert session.command("/set max_tokens off").text == "max_tokens = None"
    assert session.command("/set thinking-budget 128").text == "thinking_budget = 128"
    assert session.config == InferenceConfig.of(presence_penalty=-2.0, thinking_budget=128)
    refused = session.command("/set top_p 0")
    assert refused.error and refused.text == "/set top_p: 0 is out of range: must be in (0, 1]"
    assert session.command("/set context_size 64").error, "not a /set key (the engine's window is a flag)"
    listing = session.command("/set").text.splitlines()
    assert [line.split(" = ")[0] for line in listing] == [s.name for s in CONVERSATION]
    assert session.command("/set reasoning_effort high").text == "reasoning_effort = high"
    assert session.command("/set enable_thinking off").text == "enable_thinking = False"
    assert session.command("/set reasoning_effort extreme").error


def test_request_fields_come_from_the_schema() -> None:
    body: dict[str, Any] = {"messages": USER, **{s.name: s.default if s.default is not None else 1 for s in TUNABLE}}
    request = parse_chat(body)
    assert {k: v for k, v in request.settings.items() if k != "show_thinking"} == {
        s.name: body[s.name] for s in TUNABLE
    }
    aliased = parse_chat({"messages": USER, "max_tokens": 5, "max_completion_tokens": 7})
    assert aliased.settings["max_tokens"] == 7 and aliased.params["max_tokens"] == "max_completion_tokens"


def test_api_errors_take_the_field_from_the_error_not_its_message() -> None:
    err = ConfigError("the engine says no", field="max_tokens")
    assert api_error_of(err, {"max_tokens": "max_completion_tokens"}).param == "max_completion_tokens"
    assert api_error_of(err).param == "max_tokens"
    assert api_error_of(ConfigError("invalid top_p = 0: must be in (0, 1]")).param is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"seed": 10**30}, "invalid seed = 1000000000000000000000000000000: must be between 0 and 4294967295, or None"),
        ({"max_tokens": 10**5000}, "invalid max_tokens = an integer of more than 4300 digits: must be at least 1"),
        ({"seed": 1.5}, "invalid seed: a float is not accepted: an integer is, and it must be between 0 and"),
        ({"top_k": None}, "invalid top_k: None is not accepted: an integer is, and it must be 0 (disabled) or more"),
        ({"stop": ("a", "\ud800")}, "stop[1] holds a lone surrogate (U+D800); send valid Unicode text"),
        ({"grammar": "root ::= \udfff"}, "grammar holds a lone surrogate (U+DFFF); send valid Unicode text"),
        ({"temperature": "hot"}, "invalid temperature: a str is not accepted: must be a number"),
    ],
)
def test_the_engines_check_says_what_is_wrong_in_words_not_pythons_exceptions(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        InferenceConfig.of(**settings)
    text = str(refused.value)
    assert text.startswith(message) and refused.value.field == next(iter(settings)), text
    assert "Error" not in text and "not accepted (" not in text


def test_the_schemas_check_takes_integers_of_any_size() -> None:
    for name, value in (("temperature", 10**400), ("seed", -(10**30)), ("top_p", 10**5000)):
        with pytest.raises(ConfigError, match=f"invalid {name} = ") as refused:
            SETTINGS[name].check(value)
        assert refused.value.field == name


# -- equal defaults with and without settings -------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[InferenceConfig]:
    """The configs that reach ``_native.Engine.chat`` through Genius (every front end's path to the engine)."""
    seen: list[InferenceConfig] = []
    original = Genius._open

    def spy(held: Any, messages: Sequence[Any], config: InferenceConfig) -> Any:
        seen.append(config)
        return original(held, messages, config)

    monkeypatch.setattr(Genius, "_open", staticmethod(spy))
    return seen


def test_no_settings_and_one_default_setting_send_the_same_complete_config(sent: list[InferenceConfig]) -> None:
    default = SETTINGS["temperature"].default
    with Genius(engine=Pinky(delay=0, reply_tokens=2)) as g:
        calls: list[Callable[[], object]] = [
            lambda: list(g.chat(USER)),
            lambda: list(g.chat(USER, temperature=default)),
            lambda: list(g.chat(USER, InferenceConfig())),
            lambda: list(g.chat(USER, None, max_tokens=None)),
            lambda: g.complete_sync(USER),
        ]
        for call in calls:
            call()
    assert sent == [InferenceConfig()] * len(calls)
    assert all(type(c) is InferenceConfig for c in sent), "always a complete config, never None"


def test_every_front_end_sends_the_schemas_defaults(sent: list[InferenceConfig]) -> None:
    from rusty_genius.ogenius.serve import add_command
    from rusty_genius.ogenius.serve.cli import served_models, settings_of
    from rusty_genius.ogenius.serve.service import Service

    # ogenius chat (the TUI and the REPL send the session's request config): no flags, or a flag at its default.
    for argv in ([], ["--temperature", "0.8"], ["--seed", "none"]):
        session = Session(config=flags.config_of(_chat_parser().parse_args(argv)))
        assert session.request_config() == InferenceConfig(), argv
    # brainteaser (a fixture without settings) and the brainstem protocol.
    assert InferenceConfig.of() == InferenceConfig()
    assert Infer("r", "pinky", USER).config == InferenceConfig()
    # ogenius serve: a request with no sampling fields (its documented override: include_reasoning, default true).
    parser = argparse.ArgumentParser(prog="ogenius")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--engine", "pinky", "--pinky-delay", "0"])
    table = served_models(args)
    with Genius(engine=table.default.spec) as g:
        service = Service(g, table, flags.config_of(args), settings_of(args))
        for body in ({"messages": USER}, {"messages": USER, "temperature": 0.8}, {"messages": USER, "seed": None}):
            stream = service.open(parse_chat(body))
            assert [ev.kind for ev in stream][-1] == "complete"
            service.done(stream)
    assert sent == [InferenceConfig()] * 3
