"""What every WebSocket session on ``--ws-addr`` shares: the receive loop, sending, the JSON checks, the ``auth``
frame, and stopping the socket's work when it goes. The typed-frame protocol (ws.py, docs/websocket.md) and the
Responses WebSocket mode (responses_ws.py) subclass :class:`SocketSession` and fill in the hooks.

Rules:
- The handler's own loop (:meth:`SocketSession.run`) is the receiver. A disconnect only surfaces inside
  ``receive``: the loop then ends, and :meth:`SocketSession.stop_all` closes every stream of the socket (each
  generation stops within a token), cancels the socket's tasks and waits for them.
- Every frame is parsed by request_json.parse_json (depth-limited, lone surrogates refused). A binary frame, one that
  is not JSON (or nests too deep), one that is not a JSON object, and one whose handling fails each get an error in
  the subclass's shape (:meth:`SocketSession.error`) and the socket stays open, with every conversation on it; only
  a failed ``auth`` closes it (1008). A failure in the handling is a bug: logged (as http_shared.api logs one), the
  client gets a 500 error.
- A socket that the Guard let in without the key (browsers cannot send headers) must send
  ``{"type": "auth", "api_key": ...}`` first. Until then a frame is parsed only when it is small and shallow enough
  to be an ``auth`` (or ``ping``) frame (:data:`AUTH_FRAME_CHARS`, :data:`AUTH_FRAME_DEPTH`): anything else gets the
  ``invalid_api_key`` error unread, so a client without the key cannot make the server parse more than that.
  :meth:`SocketSession.gate` then refuses every frame but ``auth``.
- A failed send marks the socket closed and closes its streams; the receiver sees the disconnect and cleans up.
  Nothing is sent once the socket is closed.
- This module imports no session module (they import it), so the WebSocket modules form no import cycle.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any

from blacksheep import WebSocket
from blacksheep.server.websocket import WebSocketDisconnectError

from rusty_genius import ChatStream
from rusty_genius.ogenius.serve.openai_api import ApiError
from rusty_genius.ogenius.serve.request_json import MAX_DEPTH, NotText, parse_json
from rusty_genius.ogenius.serve.security import AUTHENTICATED, Policy
from rusty_genius.ogenius.serve.service import Service

log = logging.getLogger("rusty_genius.serve")

AUTH_FRAME_CHARS = 4096
"""The longest frame parsed before the socket is authenticated: ``{"type": "auth", "api_key": ...}`` with room for
any key."""
AUTH_FRAME_DEPTH = 1
"""The deepest nesting parsed before the socket is authenticated (an ``auth`` frame is one flat object)."""


def unauthorized() -> ApiError:
    """The error for a frame sent before a needed ``auth`` frame, and for a wrong key in it."""
    return ApiError(401, 'send {"type": "auth", "api_key": "..."} first', code="invalid_api_key")


class SocketSession(ABC):
    """One accepted socket: subclasses say how errors look, what a frame does and what runs on the socket."""

    NOUN = "frame"
    """What the protocol calls a client's frame, in the JSON errors ("frame", or "message")."""

    def __init__(self, ws: WebSocket, service: Service, policy: Policy) -> None:
        self.ws = ws
        self.service = service
        self.policy = policy
        self.authenticated = bool(ws.scope.get(AUTHENTICATED, True))
        self.open = True

    # -- hooks ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def error(self, error: ApiError, ref: Any = None) -> str:
        """The error frame for ``error``; ``ref`` ties it to a request (a conversation id, a stream id)."""

    @abstractmethod
    async def dispatch(self, frame: dict[str, Any]) -> None:
        """Handles one frame that is a JSON object (it calls :meth:`gate` where the protocol wants auth)."""

    def ref(self, frame: dict[str, Any]) -> Any:
        """What ties an error about ``frame`` to its request (its conversation id, its stream id); None by default."""
        return None

    @abstractmethod
    def streams(self) -> list[ChatStream]:
        """The streams of the socket's running work (a snapshot)."""

    @abstractmethod
    def live_tasks(self) -> list[asyncio.Task[None]]:
        """The socket's tasks still to cancel and wait for when it goes (a snapshot)."""

    async def greet(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Sends the first frame, right after the accept; none by default."""

    def release(self) -> None:
        """Closes every stream of the socket for good, at the end. A task cancelled before it ran never reaches its
        own ``finally``, so this must not rely on one."""
        for stream in self.streams():
            self.service.done(stream)

    # -- the connection -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        await self.greet()
        try:
            while self.open:
                message = await self.ws.receive()
                text = message.get("text")
                if text is None:
                    await self.send(self.error(ApiError(400, "send JSON text frames", code="invalid_frame")))
                    continue
                await self.handle(str(text))
        except WebSocketDisconnectError:
            pass
        finally:
            self.open = False
            await self.stop_all()

    async def stop_all(self) -> None:
        """Closes every stream of this socket (each stops within a token) and waits for the tasks."""
        self.release()
        tasks = self.live_tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def send(self, text: str) -> None:
        """Sends one frame; a socket that is gone stops the whole connection."""
        if not self.open:
            return
        try:
            await self.ws.send_text(text)
        except Exception:  # noqa: BLE001 - closed under us: the receiver sees the disconnect and cleans up
            self.open = False
            for stream in self.streams():
                stream.close()

    async def handle(self, text: str) -> None:
        """One text frame from the client: checked to be a JSON object, then :meth:`dispatch`-ed. Nothing a frame
        holds ends the socket or another conversation on it."""
        if not self.authenticated and len(text) > AUTH_FRAME_CHARS:
            await self.send(self.error(unauthorized()))  # not an auth frame: not read at all
            return
        depth = MAX_DEPTH if self.authenticated else AUTH_FRAME_DEPTH
        try:
            frame = parse_json(text, f"the {self.NOUN}", max_depth=depth, code="invalid_json")
        except NotText as err:  # valid JSON: the error goes to the frame's request where it names one
            ref = self.ref(err.value) if isinstance(err.value, dict) and self.authenticated else None
            await self.send(self.error(err if self.authenticated else unauthorized(), ref))
            return
        except ApiError as err:
            await self.send(self.error(err if self.authenticated else unauthorized()))
            return
        if not isinstance(frame, dict):
            await self.send(self.error(ApiError(400, f"a {self.NOUN} must be a JSON object", code="invalid_frame")))
            return
        try:
            await self.dispatch(frame)
        except Exception:  # a bug: logged as http_shared.api logs one, said to the client; the socket goes on
            log.exception("a WebSocket %s failed", self.NOUN)
            error = ApiError(500, "internal server error", type="server_error")
            await self.send(self.error(error, self.ref(frame)))

    # -- auth -----------------------------------------------------------------------------------------------------

    async def gate(self, frame: dict[str, Any], ref: Any = None) -> bool:
        """Takes an ``auth`` frame, and refuses any other while the socket still needs one (the error tied to
        ``ref``). True when the frame was handled here; False when it is for :meth:`dispatch` to go on with."""
        if frame.get("type") == "auth":
            await self._auth(frame)
            return True
        if not self.authenticated:
            await self.send(self.error(unauthorized(), ref))
            return True
        return False

    async def _auth(self, frame: dict[str, Any]) -> None:
        key = frame.get("api_key")
        if isinstance(key, str) and self.policy.key_ok(key):
            self.authenticated = True
            await self.send('{"type":"auth","auth":"ok"}')
            return
        await self.send(self.error(unauthorized()))
        self.open = False
        await self.ws.close(1008, "unauthorized")


__all__ = ["SocketSession", "unauthorized"]
