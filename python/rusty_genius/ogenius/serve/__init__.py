"""``ogenius serve``: an OpenAI-compatible HTTP API and a WebSocket stream over one Genius.

Two BlackSheep apps served by two uvicorn servers in one process and one event loop:

- :mod:`.http` on ``--addr``: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /health``,
  ``GET /v1/ws-info``; requests are parsed by :mod:`.openai_api` and answered by :mod:`.encode`.
- :mod:`.ws` on ``--ws-addr``: the JSON frame protocol of docs/websocket.md.
- :mod:`.security` guards both (Host, Origin, API key, body caps); :mod:`.runner` binds, starts and stops them;
  :mod:`.service` is what they share; both read streams in batches of ready events (``ChatStream.batch``).

``ogenius serve`` is wired in by :func:`add_command`; ``python -m rusty_genius.ogenius.serve`` runs it alone (through
the ``ogenius`` command: nothing in this package imports :mod:`rusty_genius.ogenius.cli`, which imports it).
"""

from rusty_genius.ogenius.serve.cli import add_command

__all__ = ["add_command"]
