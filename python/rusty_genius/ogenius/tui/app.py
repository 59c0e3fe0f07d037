"""The chat App: loads the model on its own asyncio loop, streams answers into the transcript, runs slash commands.

Every piece of conversation state lives in :class:`~rusty_genius.ogenius.session.Session`; the app only shows it.
One generation runs at a time; Ctrl+C stops it (the partial answer stays, marked), Ctrl+Q leaves. ``/model NAME``
switches the model for the next turns: resolved (and downloaded, with its progress in the status line; Ctrl+C stops
it) on a worker thread, then loaded, while the current model stays in place until the new one is ready.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.notifications import SeverityLevel
from textual.widgets import Footer, Static

from rusty_genius import ChatStream, DownloadProgress, Event, Genius, GeniusError, InferenceConfig
from rusty_genius.ogenius.flags import ModelChoice
from rusty_genius.ogenius.session import Session
from rusty_genius.ogenius.tui.messages import EndOfInput, Submitted
from rusty_genius.ogenius.tui.widgets import AssistantTurn, ChatInput, Notice, UserTurn


class ChatApp(App[int]):
    """``ogenius chat`` on a terminal. It starts ``genius`` when mounted and closes it when it exits."""

    TITLE = "ogenius chat"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #transcript {
        height: 1fr;
        padding: 0 1;
    }
    #input {
        height: auto;
        min-height: 3;
        max-height: 12;
    }
    #status {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "stop", "Stop", priority=True),
        Binding("ctrl+t", "toggle_thinking", "Thinking", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, genius: Genius, label: str, session: Session) -> None:
        super().__init__()
        self.genius = genius
        self.label = label
        self.session = session
        if not session.model_label:
            session.model_label = label
        self.state = "loading"
        """loading, ready, generating, stopping, switching (``/model``) or failed."""
        self.load_error: str | None = None
        self._stream: ChatStream | None = None
        self._stop_asked = False
        self._cold = False  # the running answer waits for its model to load
        self._stats = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._switch_to: str | None = None  # /model: the model on its way, and what happens to it
        self._switch_step = ""  # finding, downloading, stopping the switch to, loading
        self._switch_detail = ""  # how far a download is
        self._download_stop: threading.Event | None = None

    def compose(self) -> ComposeResult:
        yield VerticalScroll(id="transcript")
        yield ChatInput(id="input")
        yield Static("", id="status", markup=False)
        yield Footer()

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#transcript", VerticalScroll)

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.transcript.anchor()
        self.chat_input.focus()
        self._set_state("loading")
        self.run_worker(self._load(), name="load", group="load")

    async def on_unmount(self) -> None:
        if self._download_stop is not None:
            self._download_stop.set()  # the download thread stops at its next chunk
        if self._stream is not None:
            self._stream.close()
        await self.genius.aclose()

    async def _load(self) -> None:
        try:
            await self.genius.start()
        except (GeniusError, OSError) as err:
            self.load_error = str(err) or type(err).__name__
            self._set_state("failed")
            self.exit(2, return_code=2)
            return
        self._set_state("ready")

    def _set_state(self, state: str) -> None:
        self.state = state
        shown = {
            "loading": f"loading {self.label}…",
            "generating": f"loading {self.label}…" if self._cold else "generating…",
            "stopping": "stopping…",
            "switching": f"{self._switch_step} {self._switch_to}"
            + (f": {self._switch_detail}" if self._switch_detail else "…"),
        }
        parts = [self.label, shown.get(state, state)]
        if self._stats and state == "ready":
            parts.append(self._stats)
        self.query_one("#status", Static).update(" · ".join(parts))

    # -- input ----------------------------------------------------------------------------------------------------

    @on(Submitted)
    async def _submitted(self, message: Submitted) -> None:
        text = message.text.strip()
        if not text:
            return
        if self.state != "ready":
            self.notify(self._busy(), severity="warning")
            return
        self.chat_input.clear()
        if self.session.is_command(text):
            await self._command(text)
        else:
            self._ask(text)

    def _busy(self) -> str:
        if self.state == "loading":
            return f"{self.label} is still loading…"
        if self.state == "switching":
            return f"switching to {self._switch_to}: wait, or press Ctrl+C to stop a download"
        return "an answer is still coming: wait, or press Ctrl+C to stop it"

    @on(EndOfInput)
    def _end_of_input(self) -> None:
        self.exit(0)

    async def _command(self, line: str) -> None:
        reply = self.session.command(line)
        if reply.switch is not None:
            self._switch_to, self._switch_step, self._switch_detail = reply.switch, "finding", ""
            self._set_state("switching")
            self.run_worker(self._switch(reply.switch), name="switch", group="switch")
            return
        if reply.clear:
            await self.transcript.remove_children()
        if reply.thinking:
            self._apply_thinking()
        await self.transcript.mount(Notice(reply.text, error=reply.error))

    def _apply_thinking(self) -> None:
        for turn in self.query(AssistantTurn):
            turn.show_thinking(self.session.show_thinking)

    # -- actions --------------------------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.state == "switching":
            if self._download_stop is not None and self._switch_step in ("finding", "downloading"):
                self._download_stop.set()  # a download stops at its next chunk; a lookup is not used
                self._switch_step, self._switch_detail = "stopping the switch to", ""
                self._set_state("switching")
            elif self._switch_step == "loading":
                self.notify(f"{self._switch_to} is loading; a load cannot be stopped halfway")
        elif self.state == "generating":
            self._stop_asked = True
            if self._stream is not None:
                self._stream.cancel()
            self._set_state("stopping")
        elif self.state != "stopping":
            self.notify("press Ctrl+Q to quit")

    def action_toggle_thinking(self) -> None:
        reply = self.session.command("/think")
        self._apply_thinking()
        self.notify(reply.text)

    # -- /model ---------------------------------------------------------------------------------------------------

    async def _switch(self, name: str) -> None:
        """Resolves ``name`` (downloading it if need be) on a thread, loads it, then sends the next turns to it. On
        any failure the current model stays."""
        stop = self._download_stop = threading.Event()
        loop = asyncio.get_running_loop()
        fetched: dict[str, tuple[int, int | None]] = {}

        def progress(report: DownloadProgress) -> None:  # on the download's thread
            if stop.is_set():
                raise _DownloadStopped(f"the download of {name} was stopped")
            loop.call_soon_threadsafe(self._downloading, fetched, report)

        note, error = "", False
        try:
            choice = await asyncio.to_thread(self.session.choose, name, progress)
            if stop.is_set():
                raise _DownloadStopped(f"the switch to {name} was stopped")
            if self.session.is_current(choice):
                note = f"already talking to {choice.label}"
            else:
                await self._load_model(choice)
                note = self.session.switched(choice).text
                self.label, self._stats = choice.label, ""
        except asyncio.CancelledError:  # the app is quitting
            stop.set()
            raise
        except (GeniusError, OSError, _DownloadStopped) as err:
            note, error = f"/model {name}: {str(err) or type(err).__name__}", True
            if stop.is_set():
                note, error = f"/model {name} stopped; still talking to {self.label}", False
        finally:
            self._download_stop = None
        self._switch_to = None
        self._set_state("ready")
        await self.transcript.mount(Notice(note, error=error))

    async def _load_model(self, choice: ModelChoice) -> None:
        self._switch_to, self._switch_step, self._switch_detail = choice.label, "loading", ""
        self._set_state("switching")
        self.genius.define(choice.label, choice.engine)
        await self.genius.load(choice.label)

    def _downloading(self, fetched: dict[str, tuple[int, int | None]], report: DownloadProgress) -> None:
        if self.state != "switching" or self._switch_step.startswith("stopping"):
            return
        fetched[report.file] = (report.done, report.total)
        done = sum(d for d, _ in fetched.values())
        totals = [t for _, t in fetched.values()]
        self._switch_step, self._switch_detail = "downloading", f"{done / 1e6:,.1f} MB"
        if all(totals) and (whole := sum(t or 0 for t in totals)):
            self._switch_detail += f" of {whole / 1e6:,.1f} MB ({100 * done // whole}%)"
        self._set_state("switching")

    # -- generation -----------------------------------------------------------------------------------------------

    def _ask(self, text: str) -> None:
        messages = self.session.request(text)
        config = self.session.request_config()
        self._stop_asked = False
        self._set_state("generating")
        turn = AssistantTurn(show_thinking=self.session.show_thinking)
        # On the transcript, so the worker is cancelled when the screen goes away (the app is quitting).
        self.transcript.run_worker(self._generate(UserTurn(text), turn, messages, config), group="generate")

    async def _generate(
        self, user: UserTurn, turn: AssistantTurn, messages: Sequence[dict[str, str]], config: InferenceConfig
    ) -> None:
        await self.transcript.mount_all([user, turn])
        end: Event | None = None
        error: str | None = None
        stream: ChatStream | None = None
        try:
            stream = self._stream = self.genius.chat(messages, config, model=self.session.model)
            if self._stop_asked:
                stream.cancel()
            if stream.cold:  # its model was unloaded (to make room for a /model load that failed, say)
                self._cold = True
                self._set_state(self.state)
            async for ev in stream:
                if self._cold:
                    self._cold = False
                    self._set_state(self.state)
                if ev.kind == "thought_delta":
                    turn.add_thought(ev.text or "")
                elif ev.kind == "thought_stop":
                    turn.thought_done()
                elif ev.kind == "content":
                    await turn.add_content(ev.text or "")
                elif ev.kind == "complete":
                    end = ev
        except GeniusError as err:
            error = str(err) or type(err).__name__
        except asyncio.CancelledError:
            # The app is quitting: stop the engine, keep the conversation consistent, touch no widget.
            if stream is not None:
                stream.close()
            self._settle(turn.content, failed=False)
            raise
        finally:
            self._stream = None
            self._cold = False
        self._settle(turn.content, failed=error is not None)
        note, failed = self._closing_note(end, error)
        await turn.finish(note, error=failed)
        self._set_state("ready")

    def _settle(self, content: str, *, failed: bool) -> None:
        if content and not failed:
            self.session.answered(content)
        else:
            self.session.unanswered()

    def _closing_note(self, end: Event | None, error: str | None) -> tuple[str | None, bool]:
        if error is not None:
            return f"error: {error}", True
        reason = end.finish_reason if end is not None else ("cancelled" if self._stop_asked else None)
        if end is not None and end.usage is not None and end.timings is not None:
            tps = end.timings.decode_tokens_per_s
            self._stats = f"{tps:,.1f} tok/s · {end.usage.completion_tokens} tokens"
        if reason == "cancelled":
            return "■ stopped", False
        if reason == "length":
            return "… cut off at the token limit (/set max_tokens N)", False
        if reason is None:
            return "the answer ended without completing", True
        return None, False

    # -- logging --------------------------------------------------------------------------------------------------

    def show_log(self, message: str, levelno: int) -> None:
        """Shows a log record as a notification; safe to call from any thread."""
        severity: SeverityLevel = "error" if levelno >= logging.ERROR else "warning"
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(lambda: self.notify(message, severity=severity, timeout=8))
        except RuntimeError:  # the loop closed meanwhile: the app is gone, drop the record
            pass


class _DownloadStopped(Exception):
    """Raised into a ``/model`` download (from its progress callback) when the person pressed Ctrl+C, or after the
    lookup when Ctrl+C came during it."""


class _NotifyHandler(logging.Handler):
    def __init__(self, app: ChatApp) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.app.show_log(self.format(record), record.levelno)
        except Exception:  # noqa: BLE001 - a handler must never raise into the code that logged
            self.handleError(record)


@contextmanager
def routed_logging(app: ChatApp) -> Iterator[None]:
    """While the app runs, the root logger (and warnings) show as notifications instead of writing to the screen."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [_NotifyHandler(app)]
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers = saved


__all__ = ["ChatApp", "routed_logging"]
