"""ogenius: the command line: ``chat`` (TUI or line REPL), ``serve`` (OpenAI HTTP + WebSocket), the model
commands (``download``, ``list``, ``import``, ``rm``) and ``teaser`` (the brainteaser QA harness)."""

from rusty_genius.ogenius.cli import main

__all__ = ["main"]
