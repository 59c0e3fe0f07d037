"""``ogenius chat`` without a terminal (or with ``--plain``): a line REPL.

One user turn per line of stdin (a line holding only ``\"\"\"`` starts and ends a multi-line message); slash
commands as in the TUI. The answer streams to stdout as it comes; thinking (when shown), notices and errors go to
stderr; end of input exits 0. Ctrl+C stops the running answer and, on a terminal, returns to the prompt.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rusty_genius import ChatStream, Genius, GeniusError
from rusty_genius.ogenius.session import Session

DIM, RESET = "\x1b[2m", "\x1b[0m"
FENCE = '"""'


def colored(stream: TextIO) -> bool:
    """Whether to use ANSI styles on ``stream`` (a terminal, and NO_COLOR unset)."""
    return "NO_COLOR" not in os.environ and stream.isatty()


class PlainChat:
    """The REPL over a started (sync-mode) :class:`Genius`."""

    def __init__(
        self,
        genius: Genius,
        session: Session,
        *,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        stderr: TextIO = sys.stderr,
    ) -> None:
        self.genius = genius
        self.session = session
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.interactive = stdin.isatty()
        self.dim = colored(stderr)
        self.failed = False

    def _say(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def _read(self, prompt: str) -> str | None:
        if self.interactive:
            self.stderr.write(prompt)
            self.stderr.flush()
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\r\n")

    def _message(self) -> str | None:
        """The next message or command: a line, or the lines between two ``\"\"\"`` lines. None at end of input."""
        line = self._read(">>> ")
        if line is None or line.strip() != FENCE:
            return line
        lines: list[str] = []
        while (more := self._read("... ")) is not None and more.strip() != FENCE:
            lines.append(more)
        return "\n".join(lines)

    def run(self) -> int:
        """Reads until end of input; 0 when every turn was answered, 1 when one failed, 130 on Ctrl+C in a pipe."""
        if self.interactive:
            self._say('Type a message; """ for several lines; /help for commands; Ctrl+D to quit.')
        while True:
            try:
                text = self._message()
            except KeyboardInterrupt:
                if not self.interactive:
                    return 130
                self._say("\n(Ctrl+D quits)")
                continue
            if text is None:
                return 1 if self.failed else 0
            if not text.strip():
                continue
            if Session.is_command(text):
                self._say(self.session.command(text).text)
                continue
            try:
                self.answer(text)
            except KeyboardInterrupt:
                if not self.interactive:
                    return 130

    def answer(self, text: str) -> str:
        """Streams the answer to ``text``; returns its content. Ctrl+C stops it (and re-raises)."""
        stream = self.genius.chat(self.session.request(text), self.session.request_config())
        content: list[str] = []
        try:
            self._stream(stream, content)
        except KeyboardInterrupt:
            stream.close()
            self._end(content, "(stopped)")
            raise
        except GeniusError as err:
            self._end(content, f"ogenius: {err}")
            self.failed = True
        return "".join(content)

    def _stream(self, stream: ChatStream, content: list[str]) -> None:
        show = self.session.show_thinking
        for ev in stream:
            kind = ev.kind
            if kind == "content":
                content.append(ev.text or "")
                self.stdout.write(ev.text or "")
                self.stdout.flush()
            elif show and kind == "thought_delta":
                self.stderr.write(ev.text or "")
                self.stderr.flush()
            elif show and kind == "thought_start":
                self.stderr.write(DIM if self.dim else "")
            elif show and kind == "thought_stop":
                self.stderr.write((RESET if self.dim else "") + "\n")
                self.stderr.flush()
            elif kind == "complete":
                note = {"length": "(cut off: max tokens or context full)", "cancelled": "(stopped)"}
                self._end(content, note.get(ev.finish_reason or ""))

    def _end(self, content: list[str], note: str | None) -> None:
        """Finishes the answer's line, records the turn, and shows ``note`` on stderr."""
        if self.dim:
            self.stderr.write(RESET)
        self.stdout.write("\n")
        self.stdout.flush()
        if content:
            self.session.answered("".join(content))
        else:
            self.session.unanswered()
        if note:
            self._say(note)
