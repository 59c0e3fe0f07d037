"""The ``ogenius`` command: ``chat`` here, the model commands in :mod:`models_cli`.

Output discipline: the answer goes to stdout; thinking (dim on a terminal unless NO_COLOR is set), progress,
notices and errors go to stderr, so ``ogenius chat "..." > answer.txt`` captures only the answer.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import rusty_genius
from rusty_genius import GeniusError
from rusty_genius.brainteaser import cli as teaser_cli
from rusty_genius.ogenius import flags, models_cli
from rusty_genius.ogenius.repl import PlainChat
from rusty_genius.ogenius.sampling import recommended_for
from rusty_genius.ogenius.serve import add_command as add_serve_command
from rusty_genius.ogenius.session import HELP, Session, chooser_of

EPILOG = """\
examples:
  ogenius chat                                   talk to the default model (a TUI on a terminal)
  ogenius chat -m qwen2.5-1.5b "Why is the sky blue?"
  printf 'hi\\n' | ogenius chat --engine pinky     a line REPL when stdin or stdout is not a terminal
  ogenius download Qwen/Qwen2.5-3B-Instruct --quant Q4_K_M
  ogenius list
  ogenius serve --model qwen2.5-1.5b             OpenAI API on 127.0.0.1:8080, WebSocket on :8081

environment: RUSTY_GENIUS_HOME (config and registry), HF_HOME (model cache), HF_ENDPOINT, HF_TOKEN,
HF_HUB_OFFLINE=1 (never touch the network), NO_COLOR."""

CHAT_EPILOG = f"""\
in the chat, lines starting with / are commands:
{HELP}

TUI keys: Enter sends, Shift+Enter (or Ctrl+J) adds a line, Ctrl+C stops the answer, Ctrl+T shows or hides
thinking, Ctrl+Q quits. Plain REPL: a line is a message (\"\"\" starts and ends a multi-line one), Ctrl+C stops
the answer, Ctrl+D (end of input) quits."""


def _session(args: argparse.Namespace) -> Session:
    given = {"show_thinking": args.show_thinking, **flags.settings_of(args)}
    return Session(config=flags.config_of(args), given=given, system=args.system, show_thinking=args.show_thinking)


def _chat(args: argparse.Namespace) -> int:
    session = _session(args)  # settings are checked before any model is fetched or loaded
    choice = flags.resolve_model(args)
    session.model_label, session.chooser = choice.label, chooser_of(args)
    session.use_model_defaults(recommended_for(choice.engine, choice.resolution))
    genius = rusty_genius.Genius(choice.engine)
    use_tui = not (args.plain or args.prompt) and sys.stdin.isatty() and sys.stdout.isatty()
    if use_tui:
        from rusty_genius.ogenius.tui import run_tui

        return run_tui(genius, choice.label, session)
    with genius:
        chat = PlainChat(genius, session)
        if args.prompt:
            chat.answer(" ".join(args.prompt))
            return 1 if chat.failed else 0
        return chat.run()


def version_text() -> str:
    """``ogenius 0.1.0 (rusty-genius, cpu; avx2 fma f16c)``: the version and what this build was compiled with."""
    info = rusty_genius.build_info()
    backends = " ".join(info["backends"]) + ("" if info["real_engine"] else " (stub engine only)")
    features = " ".join(info["cpu_features"]) or "baseline"
    text = f"ogenius {info['version']} ({info['distribution']}, {backends}; {features})"
    cuda = info.get("cuda")
    if cuda:
        devices = f"{len(cuda['devices'])} device(s)" if cuda["devices"] else "no usable device, running on the CPU"
        text += f"\nCUDA {cuda['version']} for sm {','.join(cuda['architectures']) or '?'}: {devices}"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogenius",
        description="Run local LLMs (GGUF, llama.cpp): download them, chat in a terminal, serve an OpenAI API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chat = commands.add_parser(
        "chat",
        help="chat with a model: a TUI on a terminal, a line REPL otherwise",
        description="Chat with a model. On a terminal this is a full-screen app; with --plain, a PROMPT, or when "
        "stdin or stdout is not a terminal, a line REPL (answers on stdout, everything else on stderr).",
        epilog=CHAT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("prompt", nargs="*", help="one message to answer, then exit")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--plain", action="store_true", help="the line REPL even on a terminal")
    flags.add_inference_flags(chat)
    # One conversation at a time: one sequence's KV cache, not the engine's default of up to 4 (a faster load and a
    # quarter of the cache memory); --parallel still sets it.
    chat.set_defaults(run=_chat, parallel=1)
    for action in chat._actions:
        if action.dest == "parallel":
            action.help = "requests answered at once (default 1: a chat answers one at a time)"
    models_cli.add_commands(commands)
    add_serve_command(commands)
    teaser_cli.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.run(args)
    except rusty_genius.ConfigError as err:
        # A bad value that argparse could not check alone: a usage error, named.
        parser.exit(2, f"{parser.prog} {args.command}: error: {err}\n")
    except GeniusError as err:
        print(f"ogenius: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
