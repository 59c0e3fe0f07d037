"""The Textual messages of the chat TUI (all of them live here, so the flow between widgets reads in one place)."""

from __future__ import annotations

from textual.message import Message


class Submitted(Message):
    """The person pressed Enter in the chat input; ``text`` is what the box held (the app decides whether to take
    it, and clears the box when it does)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class EndOfInput(Message):
    """Ctrl+D on an empty input: the person wants to leave, as at a shell prompt."""


__all__ = ["EndOfInput", "Submitted"]
