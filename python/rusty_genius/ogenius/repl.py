"""``ogenius chat`` without a terminal (or with ``--plain``): a line REPL.

One user turn per line of stdin (a line holding only ``\"\"\"`` starts and ends a multi-line message); slash
commands as in the TUI (``/model NAME`` downloads a known model that is not here yet, with progress bars on stderr,
as ``--model`` does; the model loads with the next message). The answer streams to stdout as it comes; thinking
(when shown), notices and errors go to stderr; end of input exits 0. Ctrl+C stops the running answer (or a
download) and, on a terminal, returns to the prompt.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rusty_genius import ChatStream, Genius, GeniusError
from rusty_genius.ogenius.progress import ProgressBars
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
            try:
                if Session.is_command(text):
                    self.command(text)
                else:
                    self.answer(text)
            except KeyboardInterrupt:
                if not self.interactive:
                    return 130

    def command(self, line: str) -> None:
        """Runs a slash command and says what it did (on stderr)."""
        reply = self.session.command(line)
        if reply.switch is None:
            self._say(reply.text)
        else:
            self.switch(reply.switch)

    def switch(self, name: str) -> None:
        """``/model NAME``: finds the model (downloading it, with progress bars, when it is known but not here) and
        sends the next turns to it; on a failure the current model stays. Ctrl+C stops a download (and re-raises)."""
        bars = ProgressBars()
        try:
            choice = self.session.choose(name, bars)
        except GeniusError as err:
            self._say(f"/model {name}: {err}")
            return
        except KeyboardInterrupt:
            self._say(f"(stopped; still talking to {self.session.model_label})")
            raise
        finally:
            bars.close()
        if self.session.is_current(choice):
            self._say(f"already talking to {choice.label}")
            return
        self.genius.define(choice.label, choice.engine)
        self._say(self.session.switched(choice).text)

    def answer(self, text: str) -> str:
        """Streams the answer to ``text``; returns its content. Ctrl+C stops it (and re-raises)."""
        stream = self.genius.chat(self.session.request(text), self.session.request_config(), model=self.session.model)
        if stream.cold:  # a model chosen with /model loads now
            self._say(f"loading {self.session.model_label}…")
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
