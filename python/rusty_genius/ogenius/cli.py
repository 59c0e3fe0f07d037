"""The ``ogenius`` command (``chat`` here; the model commands in :mod:`models_cli`).

Output discipline: the answer goes to stdout; thinking (dim when stderr is a terminal and NO_COLOR is unset),
notices and errors go to stderr, so ``ogenius chat "..." > answer.txt`` captures only the answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import rusty_genius
from rusty_genius import GeniusError, InferenceConfig
from rusty_genius.ogenius import models_cli

DIM, RESET = "\x1b[2m", "\x1b[0m"


def _dim(stream: object) -> bool:
    return "NO_COLOR" not in os.environ and bool(getattr(stream, "isatty", lambda: False)())


def _answer(genius: rusty_genius.Genius, messages: list[dict[str, str]], config: InferenceConfig) -> str:
    """Streams one answer; returns its content."""
    dim = _dim(sys.stderr)
    parts: list[str] = []
    for ev in genius.chat(messages, config):
        if ev.kind == "thought_start":
            sys.stderr.write(DIM if dim else "")
        elif ev.kind == "thought_delta":
            sys.stderr.write(ev.text or "")
            sys.stderr.flush()
        elif ev.kind == "thought_stop":
            sys.stderr.write((RESET if dim else "") + "\n")
        elif ev.kind == "content":
            parts.append(ev.text or "")
            sys.stdout.write(ev.text or "")
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


def _chat(args: argparse.Namespace) -> int:
    config = InferenceConfig.of(show_thinking=not args.hide_thinking, max_tokens=args.max_tokens)
    with rusty_genius.Genius(engine=args.engine) as genius:
        messages: list[dict[str, str]] = []
        if args.system:
            messages.append({"role": "system", "content": args.system})
        if args.prompt:
            messages.append({"role": "user", "content": " ".join(args.prompt)})
            _answer(genius, messages, config)
            return 0
        # Plain line REPL: one user turn per line, until end of input.
        for line in sys.stdin:
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line.rstrip("\n")})
            reply = _answer(genius, messages, config)
            messages.append({"role": "assistant", "content": reply})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ogenius", description="Local LLMs from Python and the terminal.")
    parser.add_argument("--version", action="version", version=f"ogenius {rusty_genius.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chat = commands.add_parser("chat", help="chat with a model (one prompt, or a line REPL on stdin)")
    chat.add_argument("prompt", nargs="*", help="one message to answer; without it, read one message per line")
    chat.add_argument(
        "--engine", default="pinky", help="a path to a .gguf model, or pinky (the stub engine; the default)"
    )
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=None, help="most tokens per answer")
    chat.add_argument("--hide-thinking", action="store_true", help="do not print the model's reasoning")
    chat.set_defaults(run=_chat)
    models_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except GeniusError as err:
        print(f"ogenius: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
