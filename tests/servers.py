"""A live ``ogenius serve`` in a subprocess, on free ports, for tests and benchmarks.

``with live_server("--engine", "pinky") as server:`` starts it with ``--addr 127.0.0.1:0 --ws-addr 127.0.0.1:0``,
waits for its two startup lines (which name the ports it got), and stops it on the way out (SIGTERM, then kill).
Its stderr is collected line by line in a thread, so tests can wait for log lines such as the NOTICE of a reload.
``open_files=N`` lowers the server's limit of open files (RLIMIT_NOFILE) to N, to run it out of descriptors cheaply.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

SERVE = [sys.executable, "-m", "rusty_genius.ogenius.serve"]
_HTTP = re.compile(r"on (http://\S+?)/v1 ")
_WS = re.compile(r"WebSocket on (ws://\S+?)/ ")


@dataclass
class LiveServer:
    proc: subprocess.Popen[str]
    http: str = ""
    """``http://127.0.0.1:PORT``"""
    ws: str = ""
    """``ws://127.0.0.1:PORT``"""
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What the openai client takes."""
        return self.http + "/v1"

    @property
    def http_port(self) -> int:
        return int(self.http.rsplit(":", 1)[1])

    @property
    def ws_port(self) -> int:
        return int(self.ws.rsplit(":", 1)[1])

    def log(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.01)
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signals the server and waits for it; kills it if it does not exit in time. Returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line)


def start(args: Sequence[str], env: dict[str, str] | None = None, open_files: int | None = None) -> LiveServer:
    """Starts ``ogenius serve`` with ``args`` (no listener flags: free ports are added unless given)."""
    argv = list(args)
    # Runs in the child between fork and exec: one system call, nothing that could wait on a lock.
    limit = None if open_files is None else partial(resource.setrlimit, resource.RLIMIT_NOFILE, (open_files,) * 2)
    if "--addr" not in argv:
        argv += ["--addr", "127.0.0.1:0"]
    if "--ws-addr" not in argv:
        argv += ["--ws-addr", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [*SERVE, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
    )
    server = LiveServer(proc)
    server._reader = threading.Thread(target=server._read, daemon=True)
    server._reader.start()
    return server


@contextmanager
def live_server(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30.0, open_files: int | None = None
) -> Iterator[LiveServer]:
    server = start(args, env, open_files)
    try:
        if not server.wait_for_log("WebSocket on ", timeout):
            raise RuntimeError(f"ogenius serve did not start (exit {server.proc.poll()}):\n{server.log()}")
        log = server.log()
        http, ws = _HTTP.search(log), _WS.search(log)
        assert http and ws, log
        server.http, server.ws = http.group(1), ws.group(1)
        yield server
    finally:
        server.stop()
