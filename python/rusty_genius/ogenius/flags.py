"""The inference flags ``chat`` and ``serve`` share, and what they make: a model choice and an InferenceConfig.

Values are checked by argparse (a bad one is a usage error naming the flag, never a traceback); the model is
resolved by :func:`resolve_model`, which downloads a known model that is not here yet (as ``ollama run`` does).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from rusty_genius import Brain, InferenceConfig, Pinky
from rusty_genius.core.errors import ConfigError, GeniusError
from rusty_genius.ogenius.friendly import unknown_model


def bounded(kind: type, low: float | None = None, high: float | None = None, what: str = "") -> Any:
    """An argparse type: ``kind`` (int or float), finite, within ``low``..``high``; errors say ``what`` is wanted."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {what}")
        return value

    return parse


def add_inference_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the model, engine and sampling flags shared by ``chat`` and ``serve``."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "-m", "--model",
        help="an alias (e.g. smollm2-135m, qwen2.5-1.5b), a Hugging Face repo id, a name from 'ogenius list', or a "
        "path to a .gguf file; default: the embedded default model",
    )  # fmt: skip
    model.add_argument("--quant", help="quantization to use, e.g. Q4_K_M or Q8_0 (default: the model's own)")
    model.add_argument(
        "--engine", choices=("brain", "pinky"), default="brain",
        help="brain: llama.cpp (default); pinky: the stub engine, no weights, answers 'Narf!'",
    )  # fmt: skip
    model.add_argument(
        "--pinky-delay", type=bounded(float, 0.0, 60.0, "between 0 and 60 seconds"), metavar="SECONDS",
        help="with --engine pinky: seconds between its tokens (default 0.005)",
    )  # fmt: skip
    model.add_argument(
        "--context-size", type=bounded(int, 16, 1 << 20, "between 16 and 1048576 tokens"), metavar="TOKENS",
        help="context window in tokens (default: the model's, at most 4096)",
    )  # fmt: skip
    model.add_argument(
        "--parallel", type=bounded(int, 1, 256, "between 1 and 256"), metavar="N",
        help="requests answered at once by continuous batching (default: up to 4, as memory allows; pinky: 1)",
    )  # fmt: skip
    model.add_argument(
        "--threads", type=bounded(int, 1, 1024, "between 1 and 1024"), metavar="N",
        help="CPU threads for the model (default: one per physical core)",
    )  # fmt: skip
    model.add_argument("--show-thinking", action="store_true", help="show the model's reasoning (hidden by default)")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(
        "--temperature", type=bounded(float, 0.0, 100.0, "between 0 and 100"), metavar="T",
        help="randomness, 0 for greedy (default 0.8)",
    )  # fmt: skip
    sampling.add_argument(
        "--top-p", type=bounded(float, 0.0, 1.0, "between 0 and 1"), metavar="P", help="nucleus sampling (default 0.95)"
    )
    sampling.add_argument(
        "--top-k", type=bounded(int, 0, None, "0 or more"), metavar="K", help="keep the K likeliest, 0: off (default 40)"
    )
    sampling.add_argument(
        "--seed", type=bounded(int, 0, 2**32 - 1, "between 0 and 4294967295"), help="makes sampling reproducible"
    )
    sampling.add_argument(
        "--max-tokens", type=bounded(int, 1, None, "1 or more"), metavar="N", help="most tokens per answer"
    )


SAMPLING_FLAGS = ("temperature", "top_p", "top_k", "seed", "max_tokens")


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags that were given, as InferenceConfig keywords."""
    return {name: getattr(args, name) for name in SAMPLING_FLAGS if getattr(args, name) is not None}


def config_of(args: argparse.Namespace, **overrides: Any) -> InferenceConfig:
    """The InferenceConfig the flags ask for (``overrides`` win)."""
    return InferenceConfig.of(**{"show_thinking": args.show_thinking, **settings_of(args), **overrides})


@dataclass(frozen=True)
class ModelChoice:
    """A resolved model: what to load, and the name to show for it."""

    engine: Pinky | Brain
    label: str


def resolve_model(args: argparse.Namespace) -> ModelChoice:
    """The model the flags name, found or downloaded now (so progress and errors come before any UI starts). A name
    that names nothing raises an error listing close matches and the commands that help."""
    try:
        return _resolve(args)
    except GeniusError as err:
        raise unknown_model(err, args.model) from None


def _resolve(args: argparse.Namespace) -> ModelChoice:
    if args.engine == "pinky":
        delay = Pinky().delay if args.pinky_delay is None else args.pinky_delay
        return ModelChoice(Pinky(delay=delay, parallel=args.parallel or 1), "pinky")
    brain = {"context_size": args.context_size, "parallel": args.parallel, "threads": args.threads}
    name: str | None = args.model
    if name is not None and name.lower().endswith(".gguf"):
        if args.quant:
            raise ConfigError(f"--quant {args.quant} applies to a model name, not to the file {name}")
        from pathlib import Path

        return ModelChoice(Brain(model_path=name, **brain), Path(name).name)
    from rusty_genius import facecrab

    spec = facecrab.ensure_model(name, args.quant)
    return ModelChoice(Brain(model_path=spec.path, **brain), spec.name)
