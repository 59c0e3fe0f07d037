"""The widgets of the chat TUI: the input box, the turns of the transcript and its notice lines.

Model output is shown as text (thoughts) or through Textual's Markdown widget (answers), which renders no raw HTML.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Collapsible, Markdown, Static, TextArea
from textual.widgets.markdown import MarkdownStream

from rusty_genius.ogenius.tui.messages import EndOfInput, Submitted

PLACEHOLDER = "Message (Enter: send · Shift+Enter or Ctrl+J: new line · /help: commands)"


class ChatInput(TextArea):
    """A multi-line input: Enter sends, Shift+Enter / Alt+Enter / Ctrl+J insert a new line, pastes stay as they are.

    Terminals without the kitty keyboard protocol send Shift+Enter and Alt+Enter as a plain Enter; Ctrl+J always
    works.
    """

    NEWLINE_KEYS = frozenset({"shift+enter", "alt+enter", "ctrl+j"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, tab_behavior="focus", show_line_numbers=False, placeholder=PLACEHOLDER)

    async def _on_key(self, event: events.Key) -> None:
        # Runs before TextArea's own handler (Textual dispatches down the MRO); prevent_default stops it there.
        if event.key == "enter":
            self._consume(event)
            self.post_message(Submitted(self.text))
        elif event.key in self.NEWLINE_KEYS:
            self._consume(event)
            start, end = self.selection
            self.replace("\n", start, end, maintain_selection_offset=False)
        elif event.key == "ctrl+d" and not self.text:
            self._consume(event)
            self.post_message(EndOfInput())

    @staticmethod
    def _consume(event: events.Key) -> None:
        event.stop()
        event.prevent_default()


class UserTurn(Static):
    """What the person said, as plain text."""

    DEFAULT_CSS = """
    UserTurn {
        margin: 1 0 0 0;
        padding: 0 1;
        background: $boost;
        border-left: thick $primary;
    }
    """

    def __init__(self, text: str) -> None:
        super().__init__(Content(text), markup=False)
        self.text = text


class Notice(Static):
    """A line from the app itself (a command's reply, an error): not part of the conversation."""

    DEFAULT_CSS = """
    Notice {
        margin: 1 0 0 0;
        padding: 0 1;
        color: $text-muted;
    }
    Notice.error {
        color: $text-error;
    }
    """

    def __init__(self, text: str, *, error: bool = False) -> None:
        super().__init__(Content(text), markup=False, classes="error" if error else None)
        self.text = text
        self.error = error


class AssistantTurn(Vertical):
    """One answer: a dim, collapsible thinking block, the answer as streaming Markdown, and a closing note.

    The thinking block is shown (expanded) only while thinking is switched on and there is some thought to show.
    """

    DEFAULT_CSS = """
    AssistantTurn {
        height: auto;
        margin: 1 0 0 0;
    }
    AssistantTurn > Collapsible {
        background: $background;
        border-top: none;
        padding-bottom: 0;
    }
    AssistantTurn .thought {
        color: $text-muted;
        text-style: italic;
    }
    AssistantTurn > Markdown {
        margin: 0;
        padding: 0 1;
    }
    AssistantTurn > .note {
        padding: 0 1;
        color: $text-warning;
    }
    AssistantTurn > .note.error {
        color: $text-error;
    }
    """

    def __init__(self, *, show_thinking: bool) -> None:
        super().__init__()
        self._show = show_thinking
        self._thought_text = ""
        self._content = ""
        self._md_stream: MarkdownStream | None = None
        self.thought = Static("", markup=False, classes="thought")
        self.thinking = Collapsible(self.thought, title="thinking…", collapsed=not show_thinking)
        self.thinking.display = False
        self.answer = Markdown()
        self.note = Static("", markup=False, classes="note")
        self.note.display = False

    def compose(self) -> ComposeResult:
        yield self.thinking
        yield self.answer
        yield self.note

    @property
    def thought_text(self) -> str:
        return self._thought_text

    @property
    def content(self) -> str:
        """The answer's text so far (what the conversation keeps)."""
        return self._content

    def show_thinking(self, show: bool) -> None:
        """Shows (expanded) or hides the thinking block."""
        self._show = show
        if show:
            self.thought.update(Content(self._thought_text))
        self.thinking.display = show and bool(self._thought_text)
        self.thinking.collapsed = not show

    def add_thought(self, text: str) -> None:
        if not text:
            return
        first = not self._thought_text
        self._thought_text += text
        if self._show:  # hidden thoughts are drawn when shown, not on every token
            self.thought.update(Content(self._thought_text))
        if first:
            self.thinking.display = self._show

    def thought_done(self) -> None:
        self.thinking.title = "thought"

    async def add_content(self, text: str) -> None:
        if not text:
            return
        self._content += text
        if self._md_stream is None:
            self._md_stream = Markdown.get_stream(self.answer)
        await self._md_stream.write(text)

    async def finish(self, note: str | None = None, *, error: bool = False) -> None:
        """Flushes the answer; ``note`` (e.g. "stopped") closes it."""
        if self._md_stream is not None:
            stream, self._md_stream = self._md_stream, None
            await stream.stop()
        if self._thought_text:
            self.thought_done()
        if note:
            self.note.update(Content(note))
            self.note.set_class(error, "error")
            self.note.display = True


__all__ = ["AssistantTurn", "ChatInput", "Notice", "UserTurn"]
