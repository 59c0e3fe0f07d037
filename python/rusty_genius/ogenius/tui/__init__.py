"""The Textual TUI of ``ogenius chat``: :func:`run_tui` runs it on the terminal.

Keys: Enter sends, Shift+Enter / Alt+Enter / Ctrl+J insert a new line, Ctrl+C stops an answer, Ctrl+T shows or hides
the model's thinking, Ctrl+Q (or Ctrl+D on an empty input) quits. Slash commands are the Session's (``/help``).
"""

from __future__ import annotations

import sys

from rusty_genius import Genius
from rusty_genius.ogenius.session import Session
from rusty_genius.ogenius.tui.app import ChatApp, routed_logging


def run_tui(genius: Genius, label: str, session: Session, *, headless: bool = False) -> int:
    """Runs the chat app until the person quits; returns the exit code (2 when the model failed to load).

    ``genius`` must not be started yet: the app starts it on its own event loop (showing "loading ``label``…") and
    closes it on exit. ``label`` names the model in the status line. ``headless`` runs without a terminal (tests).
    """
    app = ChatApp(genius, label, session)
    try:
        with routed_logging(app):
            app.run(headless=headless)
    except KeyboardInterrupt:  # a SIGINT from outside (the terminal's Ctrl+C arrives as a key)
        return 130
    if app.load_error is not None:
        print(f"ogenius: {app.load_error}", file=sys.stderr)
        return 2
    return app.return_code or 0


__all__ = ["ChatApp", "run_tui"]
