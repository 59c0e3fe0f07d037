"""``ogenius serve``: its flags and what runs them.

Output discipline: one startup line per listener on stderr; logs (the NOTICE line of a cold reload, unloads,
shutdown) on stderr through ``logging``; nothing on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from rusty_genius import Brain, KeepAlive, Pinky, strategy_of
from rusty_genius.brainstem.placement import parse_bytes
from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.flags import (
    ModelChoice,
    add_inference_flags,
    bounded,
    brain_options,
    config_of,
    resolve_model,
)
from rusty_genius.ogenius.flags import settings_of as settings_given
from rusty_genius.ogenius.serve.models import ModelTable, Served, gguf_files, served_pinky
from rusty_genius.ogenius.serve.settings import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RESPONSES_STORE,
    DEFAULT_RESPONSES_STORE_BYTES,
    Address,
    AddressError,
    ServeSettings,
)

API_KEY_ENV = "OGENIUS_API_KEY"
DEFAULT_MAX_LOADED = 3
"""Models loaded at once by default (Ollama's default on CPU too); memory placement may keep fewer."""


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except AddressError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _script(text: str) -> list[str]:
    try:
        pieces = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON") from None
    if not isinstance(pieces, list) or not all(isinstance(p, str) for p in pieces):
        raise argparse.ArgumentTypeError('give a JSON list of strings, e.g. \'["<think>", "hm", "</think>", "ok"]\'')
    return pieces


def _directory(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return path


def _memory(text: str) -> str | int:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        size = parse_bytes(text)
    except GeniusError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if size < 1 << 20:
        raise argparse.ArgumentTypeError(f"{text} is less than 1 MiB; give a size such as 8G, or auto")
    return size


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    """The listener, lifecycle, security and Pinky flags of ``serve``, and the shared inference flags."""
    listen = parser.add_argument_group("listeners")
    listen.add_argument(
        "--addr", type=_address, default=Address("127.0.0.1", 8080), metavar="HOST:PORT",
        help="the OpenAI-compatible HTTP API (default 127.0.0.1:8080; port 0 picks a free one)",
    )  # fmt: skip
    listen.add_argument(
        "--ws-addr", type=_address, default=Address("127.0.0.1", 8081), metavar="HOST:PORT",
        help="the WebSocket stream, see docs/websocket.md (default 127.0.0.1:8081)",
    )  # fmt: skip
    life = parser.add_argument_group("lifecycle")
    unload = life.add_mutually_exclusive_group()
    unload.add_argument(
        "--unload-after", type=bounded(float, 0.0, None, "0 or more seconds"), default=300.0, metavar="SECONDS",
        help="unload the model after this long idle; the next request reloads it (default 300; 0: after each)",
    )  # fmt: skip
    unload.add_argument("--no-unload", action="store_true", help="keep the model loaded")
    life.add_argument(
        "--max-queue", type=bounded(int, 1, None, "1 or more"), default=32, metavar="N",
        help="requests queued or running per model before the server answers 503 (default 32)",
    )  # fmt: skip
    models = parser.add_argument_group("models (docs/models.md)")
    models.add_argument(
        "--alias", action="append", default=[], metavar="NAME",
        help="serve the default model under this name too (repeatable); the first becomes its listed id, as "
        "llama-server's --alias",
    )  # fmt: skip
    models.add_argument(
        "--models-dir", type=_directory, metavar="DIR",
        help="also serve every .gguf file in this folder and its subfolders (each under its file name)",
    )  # fmt: skip
    models.add_argument(
        "--max-loaded", type=bounded(int, 1, 64, "between 1 and 64"), default=DEFAULT_MAX_LOADED, metavar="N",
        help=f"models loaded at once; the least recently used idle one unloads first (default {DEFAULT_MAX_LOADED})",
    )  # fmt: skip
    models.add_argument(
        "--max-memory", type=_memory, default="auto", metavar="SIZE",
        help="memory the loaded models may take, e.g. 8G (estimated from each GGUF: weights, KV cache, compute "
        "buffers); least recently used idle models unload to make room (default auto: the free memory)",
    )  # fmt: skip
    security = parser.add_argument_group("security")
    security.add_argument(
        "--api-key", metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}); needed to bind a non-loopback address",
    )  # fmt: skip
    security.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="also answer to this Host name (a reverse proxy's, a LAN name); repeatable",
    )  # fmt: skip
    security.add_argument(
        "--allow-origin", action="append", default=[], metavar="ORIGIN",
        help="let browser pages from this origin (scheme://host:port) call the API and the WebSocket; repeatable",
    )  # fmt: skip
    security.add_argument(
        "--max-body-bytes", type=bounded(int, 1024, None, "at least 1024"), default=DEFAULT_MAX_BODY, metavar="N",
        help=f"largest request body and WebSocket message (default {DEFAULT_MAX_BODY})",
    )  # fmt: skip
    security.add_argument(
        "--header-timeout", type=bounded(int, 1, 3600, "1 to 3600 seconds"), default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS", help="close a connection that has not sent a request's headers within this "
        f"(default {DEFAULT_HEADER_TIMEOUT}; docs/limits.md)",
    )  # fmt: skip
    security.add_argument(
        "--idle-timeout", type=bounded(int, 1, 3600, "1 to 3600 seconds"), default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS", help="close a kept-alive HTTP connection idle this long; ping WebSockets this often and "
        f"close one that does not answer within as long (default {DEFAULT_IDLE_TIMEOUT})",
    )  # fmt: skip
    security.add_argument(
        "--max-connections", type=bounded(int, 1, None, "1 or more"), default=DEFAULT_MAX_CONNECTIONS, metavar="N",
        help=f"open connections per listener; more get 503 and are closed (default {DEFAULT_MAX_CONNECTIONS})",
    )  # fmt: skip
    life.add_argument(
        "--responses-store", type=bounded(int, 0, None, "0 or more"), default=DEFAULT_RESPONSES_STORE, metavar="N",
        help="Responses API responses kept for previous_response_id, least recently used dropped first "
        f"(default {DEFAULT_RESPONSES_STORE}; docs/responses.md)",
    )  # fmt: skip
    life.add_argument(
        "--responses-store-bytes", type=bounded(int, 0, None, "0 or more"), default=DEFAULT_RESPONSES_STORE_BYTES,
        metavar="N", help=f"most bytes those responses take (default {DEFAULT_RESPONSES_STORE_BYTES})",
    )  # fmt: skip
    pinky = parser.add_argument_group("pinky (with --engine pinky and --pinky-delay, to test clients)")
    pinky.add_argument("--pinky-tokens", type=bounded(int, 0, None, "0 or more"), default=24, metavar="N",
                       help="'Narf!' tokens per answer (default 24)")  # fmt: skip
    pinky.add_argument("--pinky-load-delay", type=bounded(float, 0.0, 600.0, "0 to 600 seconds"), default=0.0,
                       metavar="SECONDS", help="seconds a load takes (default 0)")  # fmt: skip
    pinky.add_argument("--pinky-no-think", action="store_true", help="answer without a <think> block")
    pinky.add_argument("--pinky-script", type=_script, metavar="JSON",
                       help="answer with these pieces instead, replayed exactly (a JSON list of strings; "
                       "<think>...</think> in them is reasoning)")  # fmt: skip
    add_inference_flags(parser, many_models=True)
    for action in parser._actions:
        if action.dest == "show_thinking":
            action.help = "ignored by serve: reasoning always comes back apart, in reasoning_content"


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds ``serve`` to the ``ogenius`` subcommands."""
    parser = commands.add_parser(
        "serve",
        help="serve models: OpenAI- and Anthropic-compatible HTTP API and a WebSocket stream",
        description="Serve models: every registered model, those named with --model and those in --models-dir, "
        "loaded on demand; the OpenAI-compatible HTTP API on --addr (POST /v1/chat/completions, GET /v1/models, "
        "GET /health, ...) and a WebSocket stream on --ws-addr (docs/websocket.md).",
    )
    add_serve_flags(parser)
    parser.set_defaults(run=run)
    return parser


def settings_of(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        addr=args.addr,
        ws_addr=args.ws_addr,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        allow_hosts=tuple(args.allow_host),
        allow_origins=tuple(args.allow_origin),
        max_body=args.max_body_bytes,
        responses_store=args.responses_store,
        responses_store_bytes=args.responses_store_bytes,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
    )


def setup_logging() -> None:
    """Logs to stderr: rusty_genius at INFO (the NOTICE line, unloads, shutdown), uvicorn's warnings and errors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name, level in (("rusty_genius", logging.INFO), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def served_models(args: argparse.Namespace) -> ModelTable:
    """The models the flags ask to serve (each named one found or downloaded now, as ``ollama run`` does), in a
    table that also serves the registry (not with ``--engine pinky``)."""
    names: list[str | None] = list(args.model or [None])
    first = resolve_model(argparse.Namespace(**{**vars(args), "model": names[0]}))
    if isinstance(first.engine, Pinky):
        pinky = dataclasses.replace(
            first.engine,
            reply_tokens=args.pinky_tokens,
            load_delay=args.pinky_load_delay,
            think=not args.pinky_no_think,
            script=args.pinky_script,
        )
        given = [n for n in names if n is not None and n.lower() != "pinky"] if args.engine == "pinky" else []
        pinkies = served_pinky(pinky, given)
        _alias(pinkies[0], args.alias)
        return ModelTable(pinkies, registry=False)
    entries = [entry_of(first)]
    _alias(entries[0], args.alias)
    for name in names[1:]:
        entries.append(entry_of(resolve_model(argparse.Namespace(**{**vars(args), "model": name}))))
    brain = brain_options(args)  # the load flags: every served model loads with them
    if args.models_dir is not None:
        for path in gguf_files(args.models_dir):
            entries.append(Served(path.name, Brain(model_path=path, **brain), created=int(path.stat().st_mtime)))
    return ModelTable(entries, registry=True, brain=brain)


def _alias(entry: Served, aliases: list[str]) -> None:
    """``--alias``: the first names ``entry`` in listings and answers, the others (and its own name) still reach it."""
    if aliases:
        entry.aliases = (entry.id, *aliases[1:])
        entry.id = aliases[0]


def entry_of(choice: ModelChoice) -> Served:
    """The table entry of a model resolved from the command line."""
    spec = choice.engine
    resolution = choice.resolution
    registered = resolution is not None and resolution.kind == "model"
    entry = Served(choice.label, spec, resolution, registered=registered)
    if isinstance(spec, Brain):
        with contextlib.suppress(OSError):  # a file that is gone fails its load, with its own message
            entry.created = int(Path(spec.model_path).stat().st_mtime)
    return entry


def run(args: argparse.Namespace) -> int:
    # Imported here: BlackSheep and uvicorn are for serving only; `ogenius chat` should not pay for them.
    from rusty_genius.ogenius.serve.runner import BindError, Listeners, Serving, serve

    setup_logging()
    try:
        listeners = Listeners(settings_of(args))
    except (AddressError, BindError) as err:
        print(f"ogenius serve: {err}", file=sys.stderr)
        return 2 if isinstance(err, AddressError) else 1
    try:
        table = served_models(args)
        defaults = config_of(args)
    except BaseException:
        listeners.close()
        raise
    strategy = KeepAlive() if args.no_unload else strategy_of(args.unload_after)

    def announce(settings: ServeSettings) -> None:
        key = ", API key required" if settings.api_key else ""
        others = len(table.entries) - 1
        more = f" and {others} more model{'s' if others != 1 else ''}" if others else ""
        url = settings.addr.url("http")
        print(f"ogenius serve: {table.default.id}{more} on {url}/v1 (OpenAI API{key})", file=sys.stderr)
        print(f"ogenius serve: WebSocket on {settings.ws_addr.url('ws')}/ (docs/websocket.md)", file=sys.stderr)
        sys.stderr.flush()

    serving = Serving(
        table=table, defaults=defaults, strategy=strategy, max_queue=args.max_queue, max_loaded=args.max_loaded,
        max_memory=args.max_memory, flags=settings_given(args),
    )  # fmt: skip
    return serve(listeners, serving, on_ready=announce)


__all__ = ["add_command", "add_serve_flags", "run"]
