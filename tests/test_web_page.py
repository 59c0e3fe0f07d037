"""The web chat page on ``GET /``, in a real browser: Playwright driving Debian's chromium headless against a live
``ogenius serve --engine pinky`` (nothing is downloaded at test time).

The page learns the WebSocket address from the server (GET /v1/ws-info); these tests never tell it. A streamed
answer with its thoughts shown is saved as ``target/tmp/web-page.png`` (and a dark and a phone variant beside it).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright, WebSocket, expect, sync_playwright
from rusty_genius.ogenius.serve.http import page_response

from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "target" / "tmp"

THOUGHT = "The same thing we do every night: try to take over the world. A plan needs steps, and a little code."
ANSWER = (
    "Same thing we do every night, Pinky: **try to take over the world**.\n\n"
    "The plan:\n\n"
    "1. Build a giant `Narf` ray.\n"
    "2. Point it at the moon.\n"
    "3. Wait for the *applause*.\n\n"
    "```python\n"
    "def take_over(world: str) -> str:\n"
    '    return f"{world}, now ours"\n'
    "```\n\n"
    "Narf!"
)
CODE = 'def take_over(world: str) -> str:\n    return f"{world}, now ours"'


def pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to ``text`` exactly."""
    return re.findall(r"\s*\S+|\s+", text)


SCRIPT = ["<think>", *pieces(THOUGHT), "</think>\n\n", *pieces(ANSWER)]

EVIL = "<img src=x onerror=alert(1)>"
EVIL_SCRIPT = [
    "<think>",
    "<b>not bold</b> ",
    "<img src=t onerror=alert(2)>",
    "</think>",
    EVIL,
    "\n\n<script>alert(3)</script> and `<img src=y onerror=alert(4)>`",
    "\n\n```html\n<iframe src=javascript:alert(5)></iframe>\n```\n\n**<svg onload=alert(6)>**",
]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        if sys.platform == "linux":
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
        pytest.skip(f"no {CHROMIUM} here (the browser tests run on Linux)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    # 20 ms a piece: the scripted answer (about 60 pieces) streams for a good second.
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-script", json.dumps(SCRIPT)) as live:
        yield live


@dataclass
class Watch:
    """What the page did besides rendering: console errors (CSP violations land there), page errors, dialogs, and
    the WebSockets it opened with the frames it sent."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)
        page.on("websocket", self._socket)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _socket(self, ws: WebSocket) -> None:
        self.sockets.append(ws.url)
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def assert_clean(self) -> None:
        assert not self.errors, self.errors
        assert not self.dialogs, self.dialogs


@dataclass
class Tab:
    page: Page
    watch: Watch

    def open(self, server: LiveServer) -> None:
        response = self.page.goto(server.http + "/")
        assert response is not None and response.status == 200
        self.connected()

    def connected(self, timeout: float = 10.0) -> None:
        self.page.wait_for_selector("body[data-conn=open]", timeout=timeout * 1000)

    def send(self, text: str) -> None:
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")

    def idle(self, timeout: float = 10.0) -> None:
        self.page.wait_for_selector("body[data-busy=no]", timeout=timeout * 1000)

    def ask(self, text: str, timeout: float = 10.0) -> None:
        """Sends ``text`` and waits for the whole answer."""
        n = self.turns()
        self.send(text)
        answer = self.page.locator(f"#transcript > .turn:nth-child({n + 2})")
        answer.and_(self.page.locator(".assistant:not([data-state=streaming])")).wait_for(timeout=timeout * 1000)
        self.idle()

    def answers(self) -> list[str]:
        return self.page.locator(".turn.assistant .md").all_inner_texts()

    def turns(self) -> int:
        return self.page.locator("#transcript .turn").count()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1100, "height": 780})
    page = context.new_page()
    page.set_default_timeout(10_000)
    watch = Watch()
    watch.attach(page)
    try:
        yield Tab(page, watch)
    finally:
        context.close()


def csp_of(header: str) -> dict[str, list[str]]:
    policy = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        policy[name] = values
    return policy


def test_the_page_is_package_data_served_with_a_strict_csp(server: LiveServer) -> None:
    response = httpx.get(server.http + "/")
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    html = (files("rusty_genius.ogenius.serve") / "static" / "index.html").read_text("utf-8")
    assert response.text == html
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = csp_of(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'", server.ws], "only this origin and the server's own WebSocket"
    assert csp["img-src"] == ["data:"]
    for name in ("base-uri", "form-action", "frame-ancestors"):
        assert csp[name] == ["'none'"]
    for name in ("script-src", "style-src"):
        assert csp[name] and all(v.startswith("'sha256-") for v in csp[name]), csp[name]
    # Self-contained, no inline handlers, no HTML sinks for text.
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=[\"']?(https?:)?//", html)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), "an inline event handler attribute"
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html


def test_the_dropdown_lists_the_model_and_the_socket_comes_from_the_server(tab: Tab, server: LiveServer) -> None:
    tab.open(server)
    expect(tab.page.locator("#model option")).to_have_text(["pinky — loaded"])
    assert tab.page.locator("#model").input_value() == "pinky"
    assert tab.watch.sockets == [server.ws + "/"], "the address GET /v1/ws-info gave"
    assert tab.page.locator(".empty").is_visible()
    # Reached by another loopback name, the page is told (and allowed by its CSP) that name's socket.
    tab.page.goto(server.http.replace("127.0.0.1", "localhost") + "/")
    tab.connected()
    assert tab.watch.sockets[-1] == server.ws.replace("127.0.0.1", "localhost") + "/"
    tab.watch.assert_clean()


def test_the_csp_names_the_socket_it_allows() -> None:
    def connect_src(ws: str) -> list[str]:
        header = page_response(ws).get_first_header(b"content-security-policy")
        assert header is not None
        return csp_of(header.decode())["connect-src"]

    assert connect_src("ws://127.0.0.1:8081/") == ["'self'", "ws://127.0.0.1:8081"]
    assert connect_src("ws://[::1]:8081/") == ["'self'", "ws:"], "CSP cannot name an IPv6 address"


def test_an_answer_streams_in_with_its_thoughts_and_renders_markdown(tab: Tab, server: LiveServer) -> None:
    page = tab.page
    tab.open(server)
    assert page.locator("#thinking").is_checked(), "thoughts are shown by default"
    tab.send("Brain, what are we going to do tonight?")
    page.wait_for_selector("body[data-busy=yes]")
    assert page.locator("#send").inner_text() == "Stop"
    answer = page.locator(".turn.assistant .md").last
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while page.get_attribute("body", "data-busy") == "yes" and time.monotonic() < deadline:
        text = answer.inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
    tab.idle()
    final = answer.inner_text()
    partial = [t for t in seen if t and t != final]
    assert len(partial) >= 3, f"the answer did not stream in: {seen}"
    assert all(final.startswith(t.rstrip()[:5]) for t in partial)
    # The Markdown subset, as elements built from text.
    assert answer.locator("strong").inner_text() == "try to take over the world"
    assert answer.locator("ol > li").count() == 3
    assert answer.locator("li code").inner_text() == "Narf"
    assert answer.locator("em").inner_text() == "applause"
    assert answer.locator("pre code").inner_text() == CODE
    assert answer.locator(".code-head span").inner_text() == "python"
    assert final.rstrip().endswith("Narf!")
    thought = page.locator(".turn.assistant .thought").last
    assert thought.is_visible() and thought.locator(".thought-text").inner_text() == THOUGHT
    assert page.locator(".turn.assistant .meta").last.inner_text().endswith("tok/s")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "web-page.png")
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(400)  # the colour transitions
    page.screenshot(path=SHOTS / "web-page-dark.png")
    page.emulate_media(color_scheme="light")

    # The toggle hides and shows the thoughts (and remembers the choice).
    page.click("label.switch")
    assert not page.locator("#thinking").is_checked()
    assert thought.is_hidden()
    assert answer.is_visible()
    page.reload()
    tab.connected()
    assert not page.locator("#thinking").is_checked()
    assert page.locator(".turn.assistant .thought").last.is_hidden()
    page.click("label.switch")
    assert page.locator(".turn.assistant .thought").last.is_visible()
    # The thought block collapses on its own.
    page.click(".turn.assistant .thought summary")
    assert page.locator(".turn.assistant .thought-text").last.is_hidden()
    tab.watch.assert_clean()


def test_stop_cancels_the_answer(tab: Tab, server: LiveServer) -> None:
    page = tab.page
    tab.open(server)
    tab.send("Tell me the whole plan")
    page.locator(".turn.assistant .md > *").first.wait_for()  # the page's CSP forbids wait_for_function's eval
    page.click("#send")  # the Stop button while an answer streams
    tab.idle()
    chat = next(f for f in tab.watch.sent if f["type"] == "chat")
    assert chat["messages"] == [{"role": "user", "content": "Tell me the whole plan"}] and chat["model"] == "pinky"
    assert {"type": "cancel", "id": chat["id"]} in tab.watch.sent
    assert page.locator(".turn.assistant .meta").inner_text().startswith("Stopped")
    assert "Narf!" not in page.locator(".turn.assistant .md").inner_text(), "it stopped before the end"
    assert page.locator("#send").inner_text() == "Send"
    # The next message goes out with the history (the stopped answer included).
    tab.ask("Go on")
    chats = [f for f in tab.watch.sent if f["type"] == "chat"]
    assert [m["role"] for m in chats[1]["messages"]] == ["user", "assistant", "user"]
    assert tab.answers()[-1].rstrip().endswith("Narf!")
    tab.watch.assert_clean()


def test_model_output_is_rendered_as_text_never_html(tab: Tab) -> None:
    page = tab.page
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(EVIL_SCRIPT)) as evil:
        tab.open(evil)
        tab.ask("<img src=q onerror=alert(7)> what do you say?")
        page.wait_for_timeout(300)  # time for any injected handler to fire
        answer = page.locator(".turn.assistant .md")
        assert answer.locator("p").first.inner_text() == EVIL
        assert "<script>alert(3)</script>" in answer.inner_text()
        assert answer.locator("code").first.inner_text() == "<img src=y onerror=alert(4)>"
        assert answer.locator("pre code").inner_text() == "<iframe src=javascript:alert(5)></iframe>"
        assert answer.locator("strong").inner_text() == "<svg onload=alert(6)>"
        assert page.locator(".thought-text").inner_text() == "<b>not bold</b> <img src=t onerror=alert(2)>"
        assert page.locator(".turn.user .bubble").inner_text() == "<img src=q onerror=alert(7)> what do you say?"
        for tag in ("img", "script", "iframe", "svg", "b"):
            assert page.locator(f"#transcript {tag}").count() == 0, tag
        assert tab.watch.dialogs == []
        tab.watch.assert_clean()


def test_a_cold_load_shows_a_notice(tab: Tab) -> None:
    page = tab.page
    with live_server("--engine", "pinky", "--pinky-load-delay", "1.5", "--unload-after", "0") as cold:
        tab.open(cold)
        expect(page.locator("#model option")).to_have_text("pinky — unloaded")
        tab.send("Wake up, Brain")
        notice = page.locator(".turn.assistant .notice")
        notice.get_by_text("Loading pinky").wait_for(timeout=3000)
        expect(page.locator("#model option")).to_have_text("pinky — loading…")
        tab.idle()
        assert notice.is_hidden()
        # The load sleeps 1.5 s; a busy machine adds a little (the page shows tenths).
        assert re.search(r"model loaded in 1\.[5-9] s", page.locator(".turn.assistant .meta").inner_text())
        assert tab.answers()[0].startswith("Narf!")
        tab.watch.assert_clean()


def test_switching_models_keeps_the_conversation(tab: Tab) -> None:
    page = tab.page
    two = ["--model", "alpha", "--model", "beta", "--pinky-load-delay", "1"]
    with live_server("--engine", "pinky", *two, "--pinky-delay", "0", "--pinky-tokens", "3") as multi:
        page.clock.install()  # time flows as usual, and the test can jump it ahead
        tab.open(multi)
        options = page.locator("#model option")
        expect(options).to_have_text(["alpha — loaded", "beta — unloaded"])
        assert page.locator("#model").input_value() == "alpha", "the default, when nothing was chosen"
        tab.ask("First, on alpha")
        page.select_option("#model", "beta")
        tab.send("Then on beta")
        # beta loads on demand (one second): the answer says so until its first token, and so does the dropdown.
        page.locator(".turn.assistant .notice").last.get_by_text("Loading beta…").wait_for(timeout=3000)
        expect(options.nth(1)).to_have_text("beta — loading…")
        tab.idle()
        assert page.locator(".turn.assistant .notice").last.is_hidden()
        assert page.locator(".turn.user .bubble").all_inner_texts() == ["First, on alpha", "Then on beta"]
        assert tab.answers() == ["Narf! Narf! Narf!"] * 2
        chats = [f for f in tab.watch.sent if f["type"] == "chat"]
        assert [c["model"] for c in chats] == ["alpha", "beta"]
        assert chats[1]["messages"] == [
            {"role": "user", "content": "First, on alpha"},
            {"role": "assistant", "content": "Narf! Narf! Narf!"},
            {"role": "user", "content": "Then on beta"},
        ], "the next turn goes to the new model with the whole history"
        metas = page.locator(".turn.assistant .meta").all_inner_texts()
        assert metas[0].startswith("alpha · ") and metas[1].startswith("beta · "), metas
        assert "model loaded in 1." in metas[1]
        expect(options.nth(1)).to_have_text("beta — loaded")  # read again after the answer
        listed = {m["id"]: m for m in httpx.get(multi.http + "/v1/models").json()["data"]}
        assert listed["beta"]["status"] == "loaded" and listed["alpha"]["default"]
        # The states are read again every few seconds: an unload by someone else shows without a click.
        assert httpx.post(multi.http + "/v1/models/unload", json={"model": "beta"}).status_code == 200
        page.clock.fast_forward(10_000)
        expect(options.nth(1)).to_have_text("beta — unloaded")
        # The choice is remembered.
        page.reload()
        tab.connected()
        expect(options).to_have_count(2)
        assert page.locator("#model").input_value() == "beta"
        tab.watch.assert_clean()


def test_the_conversation_survives_a_reload_and_new_chat_clears_it(tab: Tab, server: LiveServer) -> None:
    page = tab.page
    tab.open(server)
    tab.ask("Remember this")
    before = page.locator("#transcript").inner_text()
    page.reload()
    tab.connected()
    assert tab.turns() == 2
    assert page.locator("#transcript").inner_text() == before
    assert page.locator(".turn.assistant pre code").inner_text() == CODE
    page.click("#new-chat")
    assert tab.turns() == 0 and page.locator(".empty").is_visible()
    page.reload()
    tab.connected()
    assert tab.turns() == 0
    tab.watch.assert_clean()


def test_the_page_reconnects_when_the_server_comes_back(tab: Tab) -> None:
    page = tab.page
    pinky = ["--engine", "pinky", "--pinky-delay", "0.02"]
    with live_server(*pinky, "--pinky-tokens", "500") as first:
        tab.open(first)
        tab.send("One")
        page.locator(".turn.assistant .md > *").first.wait_for()
        first.stop()  # the socket drops in the middle of an answer
        tab.idle()
        page.wait_for_selector("body[data-conn=connecting]")
        assert page.locator("#conn").inner_text() == "Reconnecting…"
        cut = page.locator(".turn.assistant")
        assert cut.get_attribute("data-state") in ("error", "interrupted")
        assert cut.locator(".notice").is_visible()
        page.fill("#input", "Two")
        assert page.locator("#send").is_disabled(), "nothing can be sent while the socket is down"
        again = ["--addr", f"127.0.0.1:{first.http_port}", "--ws-addr", f"127.0.0.1:{first.ws_port}"]
        with live_server(*pinky, "--pinky-tokens", "3", *again):
            tab.connected(timeout=15)
            assert page.locator("#status").is_hidden()
            tab.ask("Two")
            chats = [f for f in tab.watch.sent if f["type"] == "chat"]
            assert chats[-1]["messages"][-1] == {"role": "user", "content": "Two"}
    assert tab.turns() == 4
    assert tab.answers()[-1] == "Narf! Narf! Narf!"
    assert len(tab.watch.sockets) >= 2
    # Only the refused connections while the server was down may log errors.
    assert all("ERR_CONNECTION_REFUSED" in e or "WebSocket connection" in e for e in tab.watch.errors), tab.watch.errors
    assert tab.watch.dialogs == []


def test_enter_sends_and_shift_enter_adds_a_line(tab: Tab, server: LiveServer) -> None:
    page = tab.page
    tab.open(server)
    page.click("#input")
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.locator("#input").input_value() == "first line\nsecond line"
    assert tab.turns() == 0
    page.keyboard.press("Enter")
    page.wait_for_selector(".turn.user")
    assert page.locator(".turn.user .bubble").inner_text() == "first line\nsecond line"
    assert page.locator("#input").input_value() == ""
    tab.idle()
    tab.watch.assert_clean()


def test_a_phone_width_has_no_horizontal_scroll(browser: Browser, server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 720}, device_scale_factor=2, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        watch = Watch()
        watch.attach(page)
        tab = Tab(page, watch)
        tab.open(server)
        tab.ask("A very long word: " + "Narf" * 80 + " and `" + "poit" * 40 + "`")
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " document.getElementById('scroller').scrollWidth, document.getElementById('scroller').clientWidth]"
        )
        assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
        for selector in ("#model", "label.switch", "#new-chat", "#send", "#input"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, (selector, box)
        header = page.locator("header").bounding_box()
        assert header is not None and header["height"] < 64, "the header keeps to one row"
        page.screenshot(path=SHOTS / "web-page-phone.png")
        watch.assert_clean()
    finally:
        context.close()


def test_a_server_with_an_api_key_asks_for_it(tab: Tab) -> None:
    page = tab.page
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "3", "--api-key", "sk-page") as keyed:
        page.goto(keyed.http + "/")
        page.wait_for_selector("#keybox:not([hidden])")
        assert page.locator("#model option").count() == 0
        page.fill("#key", "sk-wrong")
        page.press("#key", "Enter")
        page.wait_for_selector("#keybox:not([hidden])")
        assert "not accepted" in page.locator("#keybox label").inner_text()
        page.fill("#key", "sk-page")
        page.click("#key-ok")
        tab.connected()
        assert page.locator("#keybox").is_hidden()
        expect(page.locator("#model option")).to_have_text(["pinky — loaded"])
        tab.ask("hi")
        assert tab.answers() == ["Narf! Narf! Narf!"]
        assert {"type": "auth", "api_key": "sk-page"} in tab.watch.sent
        # The wrong key's refusals are the only errors.
        assert all("401" in e or "WebSocket" in e for e in tab.watch.errors), tab.watch.errors
