"""Contract of the Rust extension ``rusty_genius._native`` (checked with ``python -m mypy.stubtest``).

Users import from ``rusty_genius``; this module is private.
"""

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, final

from rusty_genius.core.config import Behavior, InferenceConfig, Reasoning, Sampling
from rusty_genius.core.output import Output

__all__ = [
    "HAS_REAL_ENGINE",
    "ContextOverflowError",
    "Engine",
    "EngineClosedError",
    "EngineError",
    "Event",
    "GeniusError",
    "ModelLoadError",
    "RequestError",
    "Timings",
    "TokenStream",
    "Usage",
    "_Batch",
    "_Next",
    "_Ready",
    "__version__",
    "_drain_callbacks",
    "build_info",
    "check_gguf",
    "estimate_memory",
    "validate_behavior",
    "validate_output",
    "validate_reasoning",
    "validate_sampling",
]

__version__: str
HAS_REAL_ENGINE: bool

# ConfigError is not defined here: it is rusty_genius.core.errors.ConfigError (a Python class, with ``field``), which
# this module raises for a bad setting.

class GeniusError(Exception):
    """Base class of every rusty-genius error."""

class RequestError(GeniusError):
    """A chat request is malformed (messages, roles)."""

class ContextOverflowError(RequestError):
    """The prompt does not fit the context window: ``prompt_tokens`` and ``context_size`` give both sizes (the
    message names them too). Both are None on an error raised without them (e.g. by hand)."""

    prompt_tokens: int | None
    """The prompt's tokens (the template applied)."""
    context_size: int | None
    """The most tokens the conversation may fill: the context window, or the request's smaller ``context_size``."""

class ModelLoadError(GeniusError):
    """A model file is missing, not GGUF, truncated or corrupted, or llama.cpp refused it."""

class EngineError(GeniusError):
    """The engine failed while generating."""

class EngineClosedError(EngineError):
    """The engine was closed; create a new one."""

@final
class Usage:
    """Token counts of one generation."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_prompt_tokens(self) -> int:
        """Prompt tokens reused from the engine's cache instead of being evaluated again."""
    @property
    def restored_prompt_tokens(self) -> int:
        """Of ``cached_prompt_tokens``, those restored from the KV store (saved when the model was last unloaded)."""
    @property
    def dropped_messages(self) -> int:
        """Messages of the conversation left out so that it fit the context (``context_overflow``)."""
    @property
    def shifted_tokens(self) -> int:
        """Tokens ``context_overflow="shift"`` took out of the context: cut from an overlong prompt (not counted in
        ``prompt_tokens``, which is what was read) and discarded by each shift while generating."""
    @property
    def draft_tokens(self) -> int:
        """Draft tokens speculative decoding fed to the model (``Brain(spec_type="ngram-simple")``)."""
    @property
    def accepted_draft_tokens(self) -> int:
        """Of ``draft_tokens``, those the model kept (they are part of ``completion_tokens``)."""
    @property
    def total_tokens(self) -> int: ...

@final
class Timings:
    """Timings of one generation, measured on the engine's thread."""

    @property
    def prompt_ms(self) -> float: ...
    @property
    def decode_ms(self) -> float: ...
    @property
    def prompt_tokens_per_s(self) -> float: ...
    @property
    def decode_tokens_per_s(self) -> float: ...

@final
class Event:
    """One event of a generation stream."""

    @property
    def kind(self) -> str:
        """``process_start``, ``thought_start``, ``thought_delta``, ``thought_stop``, ``content``,
        ``tool_call_start``, ``tool_call_delta`` (``text``: a piece of the call's arguments JSON),
        ``tool_call_stop``, ``token_logprob`` (only when the config asks for logprobs) or ``complete``."""
    @property
    def text(self) -> str | None:
        """The text of a ``thought_delta``, ``content`` or ``tool_call_delta`` event, or the token (lossy UTF-8) on a
        ``token_logprob``; None for the other kinds."""
    @property
    def index(self) -> int | None:
        """The tool call's number (from 0, in the order calls start) on ``tool_call_*`` events; None otherwise."""
    @property
    def id(self) -> str | None:
        """The tool call's id on a ``tool_call_start`` event; None otherwise."""
    @property
    def name(self) -> str | None:
        """The called function's name on a ``tool_call_start`` event; None otherwise."""
    @property
    def logprob(self) -> float | None:
        """The token's log-probability on a ``token_logprob`` event; None otherwise."""
    @property
    def token_bytes(self) -> bytes | None:
        """The token's exact bytes on a ``token_logprob`` event; None otherwise."""
    @property
    def top_logprobs(self) -> list[tuple[str, float, bytes]] | None:
        """The likeliest tokens at a ``token_logprob`` event's position, likeliest first, as ``(token, logprob,
        bytes)``; None for the other kinds."""
    @property
    def finish_reason(self) -> str | None:
        """``stop``, ``length``, ``cancelled`` or ``tool_calls`` on a ``complete`` event; None otherwise."""
    @property
    def stop_sequence(self) -> str | None:
        """The stop string that ended the answer, on a ``complete`` event that one ended; None otherwise."""
    @property
    def usage(self) -> Usage | None:
        """Token counts on a ``complete`` event; None otherwise."""
    @property
    def timings(self) -> Timings | None:
        """Timings on a ``complete`` event; None otherwise."""

@final
class _Ready:
    """An awaitable that is already done."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def __iter__(self) -> _Ready: ...
    def __next__(self) -> None: ...

@final
class _Next:
    """What ``TokenStream.__anext__`` returns: awaiting it takes the next event (at once when one is waiting)."""

    def __await__(self) -> Generator[Any, None, Event]: ...
    def __iter__(self) -> _Next: ...
    def __next__(self) -> Any: ...

@final
class _Batch:
    """What ``TokenStream.batch`` returns: awaiting it takes the next event, then every event already waiting."""

    def __await__(self) -> Generator[Any, None, list[Event]]: ...
    def __iter__(self) -> _Batch: ...
    def __next__(self) -> Any: ...

@final
class TokenStream:
    """The events of one generation, for ``async for`` (asyncio) and ``for``.

    Breaking out of the loop, ``close()``, ``aclose()`` or dropping the stream stops the engine within one token.
    ``cancel()`` stops it too but still delivers the final ``complete`` event (finish_reason ``cancelled``).
    """

    def __aiter__(self) -> TokenStream: ...
    def __anext__(self) -> _Next: ...
    def batch(self, limit: int = 256) -> _Batch:
        """Waits for the next event, then takes every event already waiting (at most ``limit`` in all) without
        suspending; for writers that pay per write, not per event. Returns ``[]`` once the stream has ended; ends
        after ``complete``. An error that comes after some events is raised by the next call, so the events before
        it are never lost; an awaiter cancelled while it waits loses nothing either. ``limit`` must be at least 1
        (``ValueError``)."""
    def __iter__(self) -> TokenStream: ...
    def __next__(self) -> Event: ...
    def cancel(self) -> None:
        """Asks the engine to stop; the stream still ends with a ``complete`` event."""
    def close(self) -> None:
        """Stops the generation and ends the stream now."""
    def aclose(self) -> Awaitable[None]:
        """Async form of :meth:`close`."""
    @property
    def finished(self) -> bool:
        """True once ``complete`` or an error was delivered, or the stream was closed."""
    def __enter__(self) -> TokenStream: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def __aenter__(self) -> Awaitable[TokenStream]: ...
    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[None]: ...

@final
class Engine:
    """A loaded engine on its own worker thread."""

    @staticmethod
    def pinky(
        *,
        delay: float = 0.005,
        reply_tokens: int = 24,
        think: bool = True,
        script: Sequence[str | bytes] | None = None,
        fail_after: int | None = None,
        pre_open_think: bool = False,
        load_delay: float = 0.0,
        parallel: int = 1,
    ) -> Engine:
        """Starts Pinky, the stub engine."""
    @staticmethod
    def brain(
        model_path: str,
        *,
        gpu_layers: int | None = None,
        threads: int | None = None,
        context_size: int | None = None,
        batch_size: int = 512,
        parallel: int | None = None,
        ubatch_size: int | None = None,
        cache_type_k: str = "f16",
        cache_type_v: str = "f16",
        flash_attention: str = "auto",
        mmap: bool = True,
        mlock: bool = False,
        kv_store: str | None = None,
        kv_store_size: int = 0,
        spec_type: str = "none",
        draft_max: int = 16,
        draft_model: str | None = None,
    ) -> Engine:
        """Loads a GGUF model into Brain, the llama.cpp engine (checks the file first; raises ``ModelLoadError``, and
        ``ConfigError`` naming the option for a bad one). ``ubatch_size``: tokens computed at once, at most
        ``batch_size`` (None: the batch). ``cache_type_k`` / ``cache_type_v``: ``"f16"``, ``"q8_0"`` or ``"q4_0"``;
        a quantized V cache needs ``flash_attention`` ``"on"`` or ``"auto"`` (``"off"`` with one is a ``ConfigError``).
        ``mmap``: map the file (llama.cpp's default); ``mlock``: lock the weights in RAM. ``kv_store``: the folder
        conversations' caches are saved to when the engine closes and restored from (None: off), ``kv_store_size``
        the bytes it may take (0: nothing is saved). ``spec_type``: ``"none"``, ``"ngram-simple"`` (speculative
        decoding by prompt lookup) or ``"draft"`` (with ``draft_model``, a GGUF of the same vocabulary), up to
        ``draft_max`` draft tokens a step, 0 to 128."""
    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        config: InferenceConfig,
        *,
        on_done: Callable[[], object] | None = None,
    ) -> TokenStream:
        """Queues a chat request with its complete config (``InferenceConfig()`` for the defaults: the engine fills
        none in) and returns its event stream. Each message is a mapping with ``role`` and ``content`` (optional on an
        assistant message that has ``tool_calls``: OpenAI's ``[{"id", "type": "function", "function": {"name",
        "arguments"}}]``); a ``tool`` message has ``tool_call_id`` and may have ``name``; an assistant message may
        have ``reasoning_content``. ``on_done`` is called once, with no arguments, when the stream is
        finished (completed, failed, closed or dropped)."""
    def generate(
        self,
        prompt: str,
        config: InferenceConfig,
        *,
        suffix: str | None = None,
        on_done: Callable[[], object] | None = None,
    ) -> TokenStream:
        """Queues a raw completion: the model continues ``prompt`` as it is (no chat template; plain ``content``
        events, no think or tool-call parsing). ``suffix``: fill in the middle between ``prompt`` and it (models with
        FIM tokens; others fail with ``RequestError``)."""
    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> Awaitable[list[int]]:
        """The token ids of ``text`` (run on the worker between steps)."""
    def token_pieces(self, ids: Sequence[int]) -> Awaitable[list[bytes]]:
        """The bytes of each token; an id outside the vocabulary raises ``RequestError``."""
    def detokenize(self, ids: Sequence[int]) -> Awaitable[str]:
        """The text of the tokens (special tokens as their text, invalid UTF-8 replaced)."""
    def apply_template(self, messages: Sequence[Mapping[str, Any]], config: InferenceConfig) -> Awaitable[str]:
        """The prompt the chat template makes of ``messages`` and ``config`` (tools, reasoning settings)."""
    def count_tokens(self, messages: Sequence[Mapping[str, Any]], config: InferenceConfig) -> Awaitable[int]:
        """The tokens the prompt of a chat request takes (its ``usage.prompt_tokens``), without generating."""
    def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> Awaitable[tuple[list[list[float]], int]]:
        """``(vectors, prompt_tokens)``: one pooled vector per input (a text or token ids), unit length when
        ``normalize``. Inputs are checked first (``RequestError`` naming ``input[i]``: empty, over the window, an id
        outside the vocabulary), then embedded in groups between steps."""
    def close(self) -> None:
        """Stops the running generation, fails queued ones, and ends the worker thread."""
    @property
    def context_size(self) -> int:
        """Tokens each sequence's window holds."""
    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to this, exclusive."""
    @property
    def embedding_size(self) -> int:
        """Width of the model's embeddings."""
    @property
    def pooling(self) -> str:
        """How embeddings are pooled: ``mean``, ``cls``, ``last`` or ``rank``."""
    @property
    def embedding_only(self) -> bool:
        """An embedding model: it answers embedding requests only."""
    @property
    def fill_in_middle(self) -> bool:
        """It has fill-in-the-middle tokens (``generate(..., suffix=...)``)."""
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def busy(self) -> bool:
        """True while a generation is running on the worker."""
    @property
    def running(self) -> int:
        """Generations running now (at most ``parallel``)."""
    @property
    def parallel(self) -> int:
        """Generations the engine runs at once (continuous batching); 0 once closed."""
    @property
    def generated_tokens(self) -> int:
        """Tokens generated over the engine's life."""
    @property
    def completed_requests(self) -> int:
        """Requests finished (completed, cancelled or failed) over the engine's life."""

def build_info() -> dict[str, Any]:
    """What this build was compiled with, read from the compiler's configuration: ``version`` (str),
    ``distribution`` (``"rusty-genius"`` or ``"rusty-genius-cuda"``/``"rusty-genius-vulkan"``), ``backends`` (list of
    str: ``"cuda"``/``"metal"``/``"vulkan"`` when compiled in, then ``"cpu"``), ``real_engine`` (bool),
    ``cpu_features`` (list of str, e.g. ``["avx", "avx2", "fma", "f16c", "bmi2"]``), ``target`` (e.g.
    ``"x86_64-linux-gnu"``), ``profile`` (``"release"``/``"debug"``), ``cuda`` (``None`` unless CUDA is compiled in;
    else a dict: ``version``, the CUDA toolkit it was compiled with, e.g. ``"13.5"``; ``architectures``, the GPU
    architectures compiled in, e.g. ``["900"]``; ``devices``, the CUDA devices llama.cpp sees now, as
    ``"name: description"``; ``error``, why no device is usable when there is none, else ``None``: models then run on
    the CPU) and ``llama_system_info`` (llama.cpp's own report, or ``None`` without the real engine)."""

def check_gguf(path: str) -> dict[str, Any]:
    """Checks that a file is a whole, well-formed GGUF (without loading it); returns ``version``, ``tensor_count``,
    ``metadata_count``, ``architecture`` (str or None), ``context_length`` (int or None), ``file_size``,
    ``metadata`` (dict of the scalar metadata values, str to int, float, bool or str: arrays are left out, and so are
    strings over 64 KiB or past 1 MiB of strings in all), ``vocab_size`` (the length of ``tokenizer.ggml.tokens``, or
    None), ``tensor_bytes`` (the tensors' data, all together) and ``embedding_only`` (an encoder, or a GGUF naming a
    pooling: the engine loads it as an embedding model). Raises ``ModelLoadError``."""

def estimate_memory(
    path: str,
    context_size: int | None = None,
    parallel: int | None = None,
    batch_size: int = 512,
    *,
    ubatch_size: int | None = None,
    cache_type_k: str = "f16",
    cache_type_v: str = "f16",
    flash_attention: str = "auto",
) -> dict[str, int]:
    """Bytes the model takes once loaded as ``Brain`` would load it with these options, from its GGUF header alone:
    ``weights`` (the tensors), ``kv_cache`` (keys and values of the cache types for ``context_size`` times
    ``parallel`` tokens: q8_0 takes 34 bytes per 32 values, q4_0 18, f16 64; 0 for an encoder), ``compute``
    (llama.cpp's compute and output buffers, for a micro-batch of ``ubatch_size`` tokens, larger with
    ``flash_attention="off"``), ``total``, and the ``context_size`` and ``parallel`` the engine chooses (its defaults
    when None: the trained context capped at 4096, up to 4 sequences as memory allows, so more with a quantized
    cache; 1 for an embedding model). Raises ``ConfigError`` for an option out of range and ``ModelLoadError`` for a
    bad file."""

def _drain_callbacks() -> None:
    """Waits (at most a second) for asyncio results still being handed over by runtime threads; run at exit."""

def validate_behavior(behavior: Behavior) -> None:
    """Checks a ``Behavior`` (raises ``rusty_genius.ConfigError`` whose ``field`` names the bad field)."""

def validate_sampling(sampling: Sampling) -> None:
    """Checks a ``Sampling`` (raises ``rusty_genius.ConfigError`` whose ``field`` names the bad field)."""

def validate_output(output: Output) -> None:
    """Checks an ``Output``: its tools, tool choice and response format, each schema compiled as the engine would
    enforce it (raises ``rusty_genius.ConfigError`` whose ``field`` is ``tools``, ``tool_choice`` or
    ``response_format`` and whose message names the exact path, e.g. ``tools[1].function.parameters.properties.x``)."""

def validate_reasoning(reasoning: Reasoning) -> None:
    """Checks a ``Reasoning`` (raises ``rusty_genius.ConfigError`` whose ``field`` names the bad field)."""
