"""The public facade: :class:`Genius` runs models and streams chat answers from them.

It owns a :class:`~rusty_genius.brainstem.Brainstem` (on the caller's event loop with ``async with``, or on a
private loop thread with plain ``with``), so one Genius serves many callers and several models, loads lazily and
shares loads, and unloads idle models by its strategy. Model management (:meth:`Genius.load`, ``unload``,
``download``, ``status``) goes through the brainstem's message protocol, served by a Dispatcher the Genius owns: the
one entrance that a management API over HTTP maps onto too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, aclosing, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from rusty_genius import _native
from rusty_genius.brainstem import Brainstem, CortexStrategy, Immediate
from rusty_genius.brainstem.dispatch import Dispatcher
from rusty_genius.brainstem.placement import budget_of
from rusty_genius.brainstem.protocol import (
    BrainstemInput,
    BrainstemOutput,
    Download,
    Downloaded,
    ErrorOutput,
    LoadModel,
    Notice,
    Remove,
    Removed,
    Status,
    StatusReport,
    Unload,
)
from rusty_genius.chat_stream import ChatStream
from rusty_genius.core.config import InferenceConfig
from rusty_genius.core.errors import ConfigError, EngineClosedError, GeniusError, RequestError
from rusty_genius.core.events import TokenStream
from rusty_genius.core.output import ResponseFormatLike, ToolCall, ToolChoiceLike, ToolLike
from rusty_genius.core.progress import DownloadProgress, OnProgress
from rusty_genius.engines import Brain, EngineSpec, Loadable, Message, Pinky, key_of, loadable
from rusty_genius.results import (
    Answer,
    Embeddings,
    EmbedInput,
    ModelInfo,
    answer_of,
    embed_inputs,
    parser_of,
    token_ids,
    unit_length,
)

if TYPE_CHECKING:
    from rusty_genius.facecrab import ModelSpec

__all__ = ["Answer", "Brain", "ChatStream", "Embeddings", "Genius", "Message", "ModelInfo", "Pinky"]

T = TypeVar("T")


class Genius:
    """Runs models and streams chat answers.

    ``model``: an alias (``"smollm2-135m"``), a Hugging Face repo id, a name registered with ``ogenius import``, a
    path to a ``.gguf`` file, or a :class:`Brain`; default: the embedded default model. ``engine``: ``"brain"``
    (default), ``"pinky"`` or a :class:`Pinky` (the stub; it ignores ``model``). ``strategy``: when idle models
    unload (:class:`KeepAlive` by default, :class:`HibernateAfter`, :class:`Immediate`). ``max_loaded``: models loaded
    at once (least recently used idle ones unload first). ``max_memory``: bytes the loaded models may take (an
    estimate from each GGUF: weights, KV cache, compute buffers), also bounded by the free memory; ``"auto"``: the
    free memory alone; None (default): by count only. A model that can never fit raises
    :class:`OutOfMemoryError`. ``models``: more models by name (see :meth:`define`); ``model`` may name one of
    them. ``max_queue``: requests queued or running per model
    before :class:`BusyError`.

    Use it as an async context manager with ``async for``, or as a plain one with ``for``::

        async with Genius("smollm2-135m") as g:
            async for ev in g.chat([{"role": "user", "content": "hi"}], max_tokens=32):
                ...

    Tools and structured output, as OpenAI's API takes them (see :meth:`chat`)::

        answer = await g.complete(messages, tools=[get_weather], response_format=Weather)
        answer.tool_calls  # [ToolCall(id=..., name="get_weather", arguments='{"city": "Paris"}')]

    Pinky calls functions too, from a script: ``Genius(engine=Pinky(script=[Pinky.tool_call("get_weather",
    {"city": "Paris"})]))`` (see :class:`Pinky`).
    """

    def __init__(
        self,
        model: EngineSpec | None = None,
        *,
        engine: EngineSpec | None = None,
        strategy: CortexStrategy | None = None,
        max_loaded: int = 1,
        max_queue: int = 32,
        max_memory: int | str | None = None,
        models: Mapping[str, EngineSpec] | None = None,
    ) -> None:
        self._budget = budget_of(max_memory)
        self._engine_choice = engine
        self._defined: dict[str, Loadable] = {}
        for name, spec in (models or {}).items():
            self.define(name, spec)
        if isinstance(model, str) and model in self._defined:
            self._default, self._default_key = self._defined[model], model
        else:
            self._default = self._choose(model, engine)
            self._default_key = key_of(self._default)
        self._chosen: dict[str, Loadable] = {}  # model names, resolved once (resolving reads registry.toml)
        self._strategy = strategy
        self._max_loaded = max_loaded
        self._max_queue = max_queue
        self._brainstem: Brainstem | None = None
        self._dispatcher = Dispatcher(key=self._key)  # model names mean here what they mean to chat()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None

    @staticmethod
    def _choose(model: EngineSpec | None, engine: EngineSpec | None) -> Loadable:
        """What ``model`` means with ``engine``: a name (None: the default model) as facecrab's resolver decides."""
        if isinstance(model, (Pinky, Brain)):
            return model
        if engine is not None and engine != "brain":
            chosen = loadable(engine)
            if isinstance(chosen, Pinky) or model is None:
                return chosen
        return loadable(model)

    def define(self, name: str, model: EngineSpec) -> None:
        """Serves ``model`` (a :class:`Brain`, :class:`Pinky`, path or name) under ``name``: a request naming
        ``name`` uses it, as a model of its own (loaded, placed and unloaded apart from any other name, even one
        for the same file). Defining a name again replaces what it means for the loads that follow."""
        self._defined[name] = self._choose(model, self._engine_choice)

    def _loadable(self, model: EngineSpec | None) -> Loadable:
        """A request's model (None: this Genius's default); a name is resolved on its first use only."""
        if model is None:
            return self._default
        if isinstance(model, str) and model in self._defined:
            return self._defined[model]
        if isinstance(model, (Pinky, Brain)):
            return self._choose(model, self._engine_choice)
        name = os.fspath(model)
        chosen = self._chosen.get(name)
        if chosen is None:
            chosen = self._chosen[name] = self._choose(model, self._engine_choice)
        return chosen

    def _key(self, model: EngineSpec | None) -> str:
        spec, key = self._loadable(model), self._key_only(model)
        self._require().register(key, spec._load, getattr(spec, "_footprint", None))
        return key

    def _key_only(self, model: EngineSpec | None) -> str:
        """The brainstem key of ``model``: a defined name is its own key; other models share theirs by file."""
        if model is None:
            return self._default_key
        if isinstance(model, str) and model in self._defined:
            return model
        return key_of(self._loadable(model))

    def _require(self) -> Brainstem:
        if self._brainstem is None:
            raise EngineClosedError("Genius is not started; use 'async with Genius(...) as g' or call start()")
        return self._brainstem

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the brainstem on the running loop and loads the default model. Idempotent."""
        if self._brainstem is None:
            self._brainstem = await self._make_brainstem()
            await self._preload()

    async def _preload(self) -> None:
        if not isinstance(self._strategy, Immediate):
            try:
                await self._require().preload(self._key(None))
            except BaseException:
                await self.aclose()
                raise

    def start_sync(self) -> None:
        """Blocking form of :meth:`start`: the brainstem runs on a private event-loop thread."""
        if self._brainstem is not None:
            return
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._brainstem = self._portal.call(self._make_brainstem)
            self._portal.call(self._preload)
        except BaseException:
            self.close()
            raise

    async def _make_brainstem(self) -> Brainstem:
        return Brainstem(
            strategy=self._strategy, max_loaded=self._max_loaded, max_queue=self._max_queue, budget=self._budget
        )

    async def aclose(self) -> None:
        """Stops every generation and unloads every model. Idempotent."""
        brainstem, self._brainstem = self._brainstem, None
        if brainstem is not None:
            await brainstem.aclose()

    def close(self) -> None:
        """Blocking form of :meth:`aclose`."""
        brainstem, self._brainstem = self._brainstem, None
        portal, self._portal = self._portal, None
        if brainstem is not None and portal is not None:
            portal.call(brainstem.aclose)
        elif brainstem is not None:
            asyncio.run(brainstem.aclose())
        if self._portal_cm is not None:
            cm, self._portal_cm = self._portal_cm, None
            cm.__exit__(None, None, None)

    async def __aenter__(self) -> Genius:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Genius:
        self.start_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[Message],
        config: InferenceConfig | None = None,
        *,
        model: EngineSpec | None = None,
        keep_alive: CortexStrategy | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoiceLike | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: ResponseFormatLike | None = None,
        **settings: Any,
    ) -> ChatStream:
        """Queues a chat request and returns its stream of events (``async for`` or ``for``).

        ``settings`` are flat :class:`Behavior` / :class:`Sampling` / :class:`Reasoning` fields applied over
        ``config``, e.g. ``g.chat(messages, max_tokens=64, temperature=0)``; the reasoning ones are
        ``enable_thinking`` (True/False: ask the chat template to turn thinking on or off), ``reasoning_effort``
        (``"low"``, ``"medium"``, ``"high"``) and ``thinking_budget`` (most tokens a thought may take). ``model``
        picks another model than the default. ``keep_alive`` (as Ollama's): how long the model stays loaded once idle
        after this request, e.g. ``HibernateAfter(60)``, ``Immediate()`` or ``KeepAlive()``; None: the Genius's
        strategy. The last request to arrive sets it (see :func:`rusty_genius.strategy_of` to make one from seconds).

        Tools and the answer's format, as OpenAI's API takes them (None: as ``config.output`` says; see
        :meth:`Output.updated <rusty_genius.Output.updated>`): ``tools``, a list of :class:`Tool`, OpenAI tool dicts or
        plain Python functions (their signature becomes the schema); ``tool_choice``, ``"auto"``, ``"none"``,
        ``"required"``, a function's name or OpenAI's ``{"type": "function", "function": {"name": ...}}``;
        ``parallel_tool_calls``; ``response_format``, ``{"type": "json_object"}``, ``{"type": "json_schema",
        "json_schema": {"name", "schema", "strict"}}``, a bare JSON schema dict or a pydantic model class. The calls
        arrive as ``tool_call_*`` events (see :mod:`rusty_genius.core.events`). ``messages`` may carry earlier calls
        and their results (see :data:`Message`); they are passed on as they are, :class:`ToolCall` objects in
        ``tool_calls`` turned into OpenAI's dicts.
        """
        config = _request_config(config, settings, tools, tool_choice, parallel_tool_calls, response_format)
        messages = _wire(messages)
        return self._stream(model, keep_alive, lambda engine, done: Genius._open((engine, done), messages, config))

    @staticmethod
    def _open(
        held: tuple[_native.Engine, Callable[[], None]], messages: Sequence[Message], config: InferenceConfig
    ) -> TokenStream:
        """Queues a chat request on a held engine (the one path every front end's chat takes to the engine)."""
        engine, release = held
        return engine.chat(messages, config, on_done=release)

    def generate(
        self,
        prompt: str,
        config: InferenceConfig | None = None,
        *,
        suffix: str | None = None,
        model: EngineSpec | None = None,
        keep_alive: CortexStrategy | None = None,
        response_format: ResponseFormatLike | None = None,
        **settings: Any,
    ) -> ChatStream:
        """Queues a raw completion and returns its stream: the model continues ``prompt`` as it is, with no chat
        template (OpenAI's legacy completions, Ollama's ``raw``). The answer arrives as ``content`` events only (no
        thought or tool-call parsing); ``stop``, ``max_tokens``, sampling, ``logprobs`` and ``response_format`` apply
        as in :meth:`chat`. ``suffix``: fill in the middle between ``prompt`` and it, in the model's FIM form (models
        with FIM tokens, see :meth:`model_info`; others raise :class:`RequestError`)."""
        config = _request_config(config, settings, None, None, None, response_format)
        if not isinstance(prompt, str) or not (suffix is None or isinstance(suffix, str)):
            raise RequestError("generate: prompt (and suffix) must be strings")
        return self._stream(
            model, keep_alive, lambda engine, done: engine.generate(prompt, config, suffix=suffix, on_done=done)
        )

    def _stream(
        self,
        model: EngineSpec | None,
        keep_alive: CortexStrategy | None,
        submit: Callable[[_native.Engine, Callable[[], None]], TokenStream],
    ) -> ChatStream:
        """A stream whose request ``submit`` queues on the model's engine (now if it is loaded, else on the first
        iteration, after the load); ``submit``'s second argument releases the model's place once the stream ends."""
        brainstem = self._require()
        key = self._key(model)
        held = brainstem.try_hold(key, keep_alive=keep_alive)
        if held is not None:
            return ChatStream(native=_submitted(held, submit))
        stream = ChatStream()

        async def acquire() -> tuple[_native.Engine, Callable[[], None]]:
            hold = await brainstem.acquire(key, keep_alive=keep_alive)
            stream.load_seconds = hold.load_seconds
            return hold.engine, hold.release

        async def open_async() -> TokenStream:
            return _submitted(await acquire(), submit)

        def open_sync() -> TokenStream:
            if self._portal is None:
                raise EngineClosedError(
                    f"{key} is not loaded yet: iterate this stream with 'async for' (or use Genius as a plain "
                    "context manager for 'for' loops)"
                )
            return _submitted(self._portal.call(acquire), submit)

        stream._open_async, stream._open_sync = open_async, open_sync
        return stream

    @asynccontextmanager
    async def _engine(
        self, model: EngineSpec | None, keep_alive: CortexStrategy | None = None
    ) -> AsyncGenerator[_native.Engine, None]:
        """The model's engine (loaded if it was not), holding a place in its queue while in use."""
        hold = await self._require().acquire(self._key(model), keep_alive=keep_alive)
        try:
            yield hold.engine
        finally:
            hold.release()

    # -- the model's other abilities: embeddings, tokens, templates ------------------------------------------------

    async def embed(
        self,
        inputs: EmbedInput | Sequence[EmbedInput],
        *,
        model: EngineSpec | None = None,
        keep_alive: CortexStrategy | None = None,
        normalize: bool = True,
        dimensions: int | None = None,
    ) -> Embeddings:
        """One embedding vector per input (a text or a list of token ids; a single one may be given alone), pooled
        as the model says (see :meth:`model_info`), unit length unless ``normalize`` is False. ``dimensions``: keep
        only the first ones (then re-normalized), for models trained for it (Matryoshka); at most the model's
        width. Running chat answers keep going while it works (its inputs go to the engine in small groups). An
        empty input, one longer than the model's window or a token id outside its vocabulary raises
        :class:`RequestError` naming it (``input[2]``)."""
        batch = embed_inputs(inputs)
        async with self._engine(model, keep_alive) as engine:
            if dimensions is not None and (
                isinstance(dimensions, bool)
                or not isinstance(dimensions, int)
                or not 1 <= dimensions <= engine.embedding_size
            ):
                raise ConfigError(
                    f"invalid dimensions = {dimensions!r}: must be between 1 and the model's {engine.embedding_size}",
                    "dimensions",
                )
            vectors, tokens = await engine.embed(batch, normalize=normalize and dimensions is None)
        if dimensions is not None:
            vectors = [unit_length(v[:dimensions]) if normalize else v[:dimensions] for v in vectors]
        return Embeddings(vectors, tokens)

    def embed_sync(
        self,
        inputs: EmbedInput | Sequence[EmbedInput],
        *,
        model: EngineSpec | None = None,
        normalize: bool = True,
        dimensions: int | None = None,
    ) -> Embeddings:
        """Blocking form of :meth:`embed`, for a Genius used as a plain context manager (``with Genius() as g``)."""
        return self._blocking(
            functools.partial(self.embed, model=model, normalize=normalize, dimensions=dimensions), inputs
        )

    def tokenize_sync(
        self, text: str, *, add_special: bool = True, parse_special: bool = True, model: EngineSpec | None = None
    ) -> list[int]:
        """Blocking form of :meth:`tokenize` (``with Genius() as g``)."""
        call = functools.partial(self.tokenize, add_special=add_special, parse_special=parse_special, model=model)
        return self._blocking(call, text)

    def _blocking(self, call: Callable[[Any], Awaitable[T]], arg: Any) -> T:
        if self._portal is None:
            raise EngineClosedError("the blocking forms need a Genius used as a plain context manager ('with')")
        return self._portal.call(call, arg)

    async def tokenize(
        self, text: str, *, add_special: bool = True, parse_special: bool = True, model: EngineSpec | None = None
    ) -> list[int]:
        """The token ids of ``text`` in the model's vocabulary; ``add_special``: with the BOS token the model wants;
        ``parse_special``: special-token text (``<|im_start|>``) becomes its token."""
        if not isinstance(text, str):
            raise RequestError("tokenize: text must be a string")
        async with self._engine(model) as engine:
            return await engine.tokenize(text, add_special=add_special, parse_special=parse_special)

    async def token_pieces(self, ids: Sequence[int], *, model: EngineSpec | None = None) -> list[bytes]:
        """The bytes of each token (a piece may be part of a UTF-8 character)."""
        async with self._engine(model) as engine:
            return await engine.token_pieces(token_ids(ids))

    async def detokenize(self, ids: Sequence[int], *, model: EngineSpec | None = None) -> str:
        """The text of the tokens (special tokens as their text)."""
        async with self._engine(model) as engine:
            return await engine.detokenize(token_ids(ids))

    async def apply_template(
        self,
        messages: Sequence[Message],
        config: InferenceConfig | None = None,
        *,
        model: EngineSpec | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoiceLike | None = None,
        **settings: Any,
    ) -> str:
        """The prompt :meth:`chat` would give the model for ``messages``: its chat template applied with the tools
        and reasoning settings (``enable_thinking``, ``reasoning_effort``), ending with the open assistant turn; when
        the last message is an assistant's with text and no tool calls, its text follows (the model continues it: a
        prefill)."""
        config = _request_config(config, settings, tools, tool_choice, None, None)
        async with self._engine(model) as engine:
            return await engine.apply_template(_wire(messages), config)

    async def count_tokens(
        self,
        messages: Sequence[Message],
        config: InferenceConfig | None = None,
        *,
        model: EngineSpec | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoiceLike | None = None,
        response_format: ResponseFormatLike | None = None,
        **settings: Any,
    ) -> int:
        """How many tokens the prompt of :meth:`chat` with these arguments takes (its ``usage.prompt_tokens``),
        without generating anything: the template with its tools and settings, as the engine would tokenize it."""
        config = _request_config(config, settings, tools, tool_choice, None, response_format)
        async with self._engine(model) as engine:
            return await engine.count_tokens(_wire(messages), config)

    async def model_info(self, model: EngineSpec | None = None) -> ModelInfo:
        """What ``model`` (default: the default model) can do; loads it if it is not loaded."""
        async with self._engine(model) as e:
            return ModelInfo(
                e.context_size, e.vocab_size, e.embedding_size, e.pooling, e.embedding_only, e.fill_in_middle
            )

    async def complete(
        self,
        messages: Sequence[Message],
        config: InferenceConfig | None = None,
        *,
        model: EngineSpec | None = None,
        keep_alive: CortexStrategy | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoiceLike | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: ResponseFormatLike | None = None,
        **settings: Any,
    ) -> Answer:
        """The whole answer to ``messages`` (content, thinking, tool calls, the parsed response format, usage,
        timings); the arguments are :meth:`chat`'s."""
        config = _request_config(config, settings, tools, tool_choice, parallel_tool_calls, response_format)
        stream = self.chat(messages, config, model=model, keep_alive=keep_alive)
        return answer_of([ev async for ev in stream], parser_of(response_format, config.output))

    def complete_sync(
        self,
        messages: Sequence[Message],
        config: InferenceConfig | None = None,
        *,
        model: EngineSpec | None = None,
        keep_alive: CortexStrategy | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoiceLike | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: ResponseFormatLike | None = None,
        **settings: Any,
    ) -> Answer:
        """Blocking form of :meth:`complete`."""
        config = _request_config(config, settings, tools, tool_choice, parallel_tool_calls, response_format)
        stream = self.chat(messages, config, model=model, keep_alive=keep_alive)
        return answer_of(list(stream), parser_of(response_format, config.output))

    # -- models: through the brainstem's message protocol ------------------------------------------------------

    async def _send(self, message: BrainstemInput) -> AsyncGenerator[BrainstemOutput, None]:
        """The outputs of ``message`` from this Genius's Dispatcher; an :class:`ErrorOutput` is raised as its error."""
        self._dispatcher.attach(self._brainstem)
        async with aclosing(self._dispatcher.handle(message)) as outputs:
            async for output in outputs:
                if isinstance(output, ErrorOutput):
                    raise output.error.exception()
                yield output

    async def load(self, model: str | os.PathLike[str] | None = None) -> None:
        """Loads ``model`` (a name as :meth:`chat` takes it; default: the default model) now, sharing a load already
        under way; then the strategy applies as after a request (:class:`Immediate` unloads it again at once)."""
        async for _ in self._send(LoadModel(None if model is None else os.fspath(model))):
            pass

    async def unload(self, model: str | os.PathLike[str] | None = None) -> bool:
        """Unloads ``model`` (default: the default model) now; returns whether it was loaded. A model that requests
        still hold raises :class:`BusyError`. The next request loads it again."""
        return [o async for o in self._send(Unload(None if model is None else os.fspath(model)))] != []

    async def download(
        self, model: str | None = None, quant: str | None = None, *, on_progress: OnProgress | None = None
    ) -> ModelSpec:
        """Fetches (or finds) ``model`` (default: the default model) and registers it, on a worker thread; returns
        its :class:`~rusty_genius.facecrab.ModelSpec`. ``on_progress`` gets a :class:`DownloadProgress` as bytes
        arrive (on this loop); nothing is printed. Never loads the model; works before :meth:`start` too."""
        async for output in self._send(Download(model, quant)):
            if isinstance(output, DownloadProgress) and on_progress is not None:
                on_progress(output)
            elif isinstance(output, Downloaded):
                return output.spec
        raise GeniusError(f"the download of {model or 'the default model'} ended without a result")

    async def remove(self, model: str, *, delete_files: bool = True) -> Removed:
        """Unloads ``model`` if it is loaded (one that requests hold raises :class:`BusyError`), unregisters it and,
        with ``delete_files``, deletes the files rusty-genius downloaded for it (an imported file is always kept);
        returns what was deleted and kept."""
        async for output in self._send(Remove(model, delete_files)):
            if isinstance(output, Removed):
                return output
        raise GeniusError(f"the removal of {model} ended without a result")

    async def status(self) -> StatusReport:
        """The registered models and the loaded ones (as Ollama's ``/api/ps``); never loads anything."""
        async for output in self._send(Status()):
            if isinstance(output, StatusReport):
                return output
        raise GeniusError("no status came back")

    def models(self) -> list[ModelSpec]:
        """The registered models (:class:`~rusty_genius.facecrab.ModelSpec`), without loading any (the blocking form
        of :meth:`status`'s ``models``)."""
        from rusty_genius import facecrab

        return list(facecrab.Registry().models().values())

    def watch(self, callback: Callable[[Notice], None]) -> None:
        """Calls ``callback`` (on this Genius's loop) with every model lifecycle :class:`Notice` from now on
        (``kind``: ``loaded``, ``reloaded`` or ``unloaded``; ``model``: its key; ``seconds``: how long a load took),
        and at once with a ``loaded`` notice for each model loaded now. For monitoring: it never loads anything."""
        brainstem = self._require()
        for key in brainstem.loaded():
            callback(Notice("loaded", key, f"{key} is loaded", brainstem.load_seconds(key)))
        brainstem.watch(callback)

    def loaded(self) -> list[str]:
        """The models loaded now; never loads one."""
        return self._brainstem.loaded() if self._brainstem is not None else []

    def is_loaded(self, model: EngineSpec | None = None) -> bool:
        """Whether ``model`` (default: the default model) is loaded now; never loads it."""
        return self._key_only(model) in self.loaded()

    def states(self) -> dict[str, str]:
        """Each model the brainstem knows, by key (a defined name, a path, ``pinky``): ``loaded``, ``loading``,
        ``unloading`` or ``unloaded``; never loads one."""
        return self._brainstem.states() if self._brainstem is not None else {}

    def resident_bytes(self) -> dict[str, int]:
        """The estimated bytes each loaded model takes, by key (see ``max_memory``)."""
        return self._brainstem.resident_bytes() if self._brainstem is not None else {}

    def engine_of(self, model: EngineSpec | None = None) -> _native.Engine | None:
        """``model``'s native engine (default: the default model's) if it is loaded now, else None; never loads it."""
        return self._brainstem.engine_of(self._key_only(model)) if self._brainstem is not None else None

    @property
    def engine(self) -> _native.Engine:
        """The default model's native engine (its ``busy`` and token counters), if it is loaded."""
        engine = self._require().engine_of(self._default_key)
        if engine is None:
            raise EngineClosedError("the default model is not loaded")
        return engine


def _submitted(
    held: tuple[_native.Engine, Callable[[], None]],
    submit: Callable[[_native.Engine, Callable[[], None]], TokenStream],
) -> TokenStream:
    engine, release = held
    try:
        return submit(engine, release)
    except BaseException:
        release()
        raise


def _request_config(
    config: InferenceConfig | None,
    settings: Mapping[str, Any],
    tools: Sequence[ToolLike] | None,
    tool_choice: ToolChoiceLike | None,
    parallel_tool_calls: bool | None,
    response_format: ResponseFormatLike | None,
) -> InferenceConfig:
    """The complete config of one request: the schema's defaults under ``config``, under what was asked (the engine
    never fills in its own)."""
    config = InferenceConfig() if config is None else config
    if settings:
        config = config.updated(**settings)
    if tools is not None or tool_choice is not None or parallel_tool_calls is not None or response_format is not None:
        output = config.output.updated(
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            response_format=response_format,
        )
        config = dataclasses.replace(config, output=output)
    return config


def _wire(messages: Sequence[Message]) -> Sequence[Message]:
    """``messages`` as the engine reads them: unchanged, except that :class:`ToolCall` objects in an assistant
    message's ``tool_calls`` become OpenAI's dicts (in a copy of that message)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        return messages  # the engine names what is wrong
    if not any(isinstance(m, Mapping) and _has_objects(m.get("tool_calls")) for m in messages):
        return messages
    return [
        {**m, "tool_calls": [c.to_openai() if isinstance(c, ToolCall) else c for c in m["tool_calls"]]}
        if isinstance(m, Mapping) and _has_objects(m.get("tool_calls"))
        else m
        for m in messages
    ]


def _has_objects(calls: object) -> bool:
    return isinstance(calls, Sequence) and any(isinstance(c, ToolCall) for c in calls)
