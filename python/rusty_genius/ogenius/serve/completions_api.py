"""OpenAI's legacy completions, ``POST /v1/completions`` (and ``/completions``, as llama-server serves it): the body
checked here, run as raw completions (:meth:`Genius.generate <rusty_genius.Genius.generate>`: no chat template), the
events encoded by :mod:`.completions_encode`. docs/completions-embeddings.md lists what is supported.

Rules:
- The fields that mean what they mean on chat (sampling, ``max_tokens``, ``stop``, ``n``, ``seed``, ``logit_bias``,
  ``stream``/``stream_options``, ``response_format``, ``grammar``, ``keep_alive``) are parsed by
  :func:`~.openai_api.parse_chat`, so every check of the chat path applies; the others are refused or ignored here.
  ``max_tokens`` defaults to 16, as OpenAI's; ``json_schema`` (llama-server's field) is a ``json_schema``
  ``response_format``; llama-server's other extensions are honoured or refused as on chat (llama_extensions.py).
- ``prompt``: a string, a list of strings, token ids, or a list of token-id lists (mixed is fine). Token ids are
  detokenized to text and the text is what the model continues (it may tokenize differently). Each prompt gets ``n``
  choices, listed prompt by prompt (choice ``p * n + i``); at most :data:`MAX_COMPLETIONS` in all.
- ``suffix``: fill in the middle, for models with FIM tokens (others: 400 naming ``suffix``); ``""`` is no suffix.
- ``echo``: the prompt's text comes first in each choice's ``text``; with ``logprobs``, the prompt's tokens come first
  too, with null ``token_logprobs`` and ``top_logprobs`` (the engine does not score prompts).
- ``logprobs``: 0 to 5 alternatives per token (OpenAI's limit), in the legacy shape; ``best_of``: absent or equal to
  ``n`` (this server returns every completion it generates); ``user`` is accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blacksheep import Request, Response, Router

from rusty_genius.core.errors import GeniusError, shown
from rusty_genius.ogenius.serve import completions_encode as encode
from rusty_genius.ogenius.serve import llama_extensions
from rusty_genius.ogenius.serve.choices import Choices
from rusty_genius.ogenius.serve.http_shared import api
from rusty_genius.ogenius.serve.openai_api import ApiError, ChatRequest, parse_chat
from rusty_genius.ogenius.serve.respond import respond
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.tokens_api import error_naming, read_json, run_call, token_ids

DEFAULT_MAX_TOKENS = 16
"""OpenAI's default ``max_tokens`` for completions."""
MAX_LOGPROBS = 5
"""The most alternatives per token ``logprobs`` may ask for (OpenAI's limit)."""
MAX_COMPLETIONS = 16
"""The most completions one request may ask for: prompts times ``n``."""

_SHARED = (
    "model", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
    "seed", "max_tokens", "stop", "n", "stream", "stream_options", "logit_bias", "grammar", "keep_alive",
    "response_format", "context_overflow",
)  # fmt: skip
"""The fields parsed as on chat."""


@dataclass
class CompletionRequest:
    """A checked ``/v1/completions`` body."""

    chat: ChatRequest
    """Its settings, model, n, stream and format, as a chat request (``messages`` unused)."""
    prompts: list[str | list[int]]
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = None
    texts: list[str] = field(default_factory=list)
    """Each prompt's text (token prompts detokenized), once :func:`prepare` ran."""
    echoed: list[list[encode.Entry]] = field(default_factory=list)
    """With ``echo`` and ``logprobs``: each prompt's tokens, as logprob entries."""

    @property
    def echoed_logprobs(self) -> bool:
        return self.echo and self.logprobs is not None


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, param=param)


def parse(body: dict[str, Any]) -> CompletionRequest:
    """Checks a completions body; raises :class:`ApiError` (400) naming the field at fault."""
    shared = {name: body[name] for name in _SHARED if name in body}
    # llama-server's extensions (json_schema among them): honoured or refused as on chat (llama_extensions); n_probs
    # is chat's logprobs, refused here.
    shared.update({name: body[name] for name in llama_extensions.FIELDS - {"n_probs"} if name in body})
    if body.get("n_probs") is not None:
        raise _bad("'n_probs' is not supported here: use 'logprobs' (0 to 5 alternatives per token)", "n_probs")
    chat = parse_chat({**shared, "messages": [{"role": "user", "content": ""}]})
    chat.messages = []
    if "max_tokens" not in chat.settings:
        chat.settings["max_tokens"] = DEFAULT_MAX_TOKENS
        chat.params["max_tokens"] = "max_tokens"
    request = CompletionRequest(chat, _prompts(body.get("prompt")))
    if len(request.prompts) * chat.n > MAX_COMPLETIONS:
        count = f"{len(request.prompts)} prompts with n = {chat.n}"
        raise _bad(f"{count} make more than {MAX_COMPLETIONS} completions: send fewer per request", "prompt")
    best_of = body.get("best_of")
    if best_of is not None and (isinstance(best_of, bool) or best_of != chat.n):
        raise _bad(
            f"'best_of' is {shown(best_of)}: this server returns every completion it makes; leave it out or set it "
            "to n",
            "best_of",
        )
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _bad("'suffix' must be a string", "suffix")
    request.suffix = suffix or None
    if request.suffix is None and "" in request.prompts:
        where = "prompt" if len(request.prompts) == 1 else f"prompt[{request.prompts.index('')}]"
        raise _bad(f"{where} is empty: give the text the model should continue", where)
    echo = body.get("echo")
    if echo is not None and not isinstance(echo, bool):
        raise _bad("'echo' must be true or false", "echo")
    request.echo = bool(echo)
    logprobs = body.get("logprobs")
    if logprobs is not None:
        if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= MAX_LOGPROBS:
            raise _bad(f"'logprobs' must be an integer from 0 to {MAX_LOGPROBS}: alternatives per token", "logprobs")
        request.logprobs = logprobs
        chat.settings["logprobs"] = logprobs
        chat.params["logprobs"] = "logprobs"
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("'user' must be a string", "user")
    return request


def _prompts(value: object) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise _bad("'prompt' must be a string, a list of strings, or token ids (a list, or a list of lists)", "prompt")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return [token_ids(value, "prompt")]
    prompts: list[str | list[int]] = []
    for i, item in enumerate(value):
        where = f"prompt[{i}]"
        if isinstance(item, list) and item:
            prompts.append(token_ids(item, where))
        elif isinstance(item, str):
            prompts.append(item)
        else:
            raise _bad(f"{where} must be a string or a non-empty list of token ids", where)
    return prompts


async def prepare(service: Service, request: CompletionRequest, model: str | None = None) -> None:
    """The engine calls before generating: token prompts detokenized, the suffix checked against the model, and
    with ``echo`` and ``logprobs`` the prompts' tokens."""
    genius = service.genius
    lone = len(request.prompts) == 1
    for i, prompt in enumerate(request.prompts):
        if isinstance(prompt, str):
            request.texts.append(prompt)
            continue
        try:
            request.texts.append(await genius.detokenize(prompt, model=model))
        except GeniusError as err:
            raise error_naming(err, "prompt" if lone else f"prompt[{i}]") from None
    try:
        if request.suffix is not None and not (await genius.model_info(model)).fill_in_middle:
            raise _bad("'suffix': this model has no fill-in-the-middle tokens; send the prompt without one", "suffix")
        if request.echoed_logprobs:
            for text in request.texts:
                ids = await genius.tokenize(text, add_special=False, model=model)
                request.echoed.append(encode.prompt_entries(await genius.token_pieces(ids, model=model)))
    except GeniusError as err:
        raise error_naming(err, "prompt") from None


def _error_of(err: GeniusError) -> ApiError:
    """A generation's error: the engine's RequestError names the suffix or the prompt."""
    return error_naming(err, "suffix" if "suffix:" in str(err) else "prompt")


class Create:
    """``POST /v1/completions``."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def __call__(self, request: Request) -> Response:
        service = self.service
        parsed = parse(await read_json(request, service))
        chat = parsed.chat
        if parsed.suffix is not None or parsed.echoed_logprobs or not all(isinstance(p, str) for p in parsed.prompts):
            await run_call(service, request, chat.model, lambda model: prepare(service, parsed, model))
        else:
            await prepare(service, parsed)  # no engine call: the prompts are the texts
        streams = []
        try:
            for text in parsed.texts:
                streams += service.open_choices(chat, prompt=text, suffix=parsed.suffix)
        except ApiError as err:
            for stream in streams:
                service.done(stream)
            if err.param == "messages":
                err.param = "prompt"
            raise
        choices = Choices(streams)
        encoder = encode.Encoder(
            service.model_of(streams[0]),
            parsed.texts,
            chat.n,
            parsed.echo,
            parsed.echoed,
            parsed.logprobs,
            chat.include_usage,
        )
        return await respond(service, request, choices, chat.stream, encoder, _error_of)


def add_routes(router: Router, service: Service) -> None:
    """``POST /v1/completions`` and its alias ``/completions`` on the HTTP app's router."""
    create = api(Create(service))
    router.add_post("/v1/completions", create)
    router.add_post("/completions", create)


__all__ = ["DEFAULT_MAX_TOKENS", "MAX_COMPLETIONS", "MAX_LOGPROBS", "CompletionRequest", "Create", "add_routes"]
