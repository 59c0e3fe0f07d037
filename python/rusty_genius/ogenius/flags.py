"""The inference flags ``chat`` and ``serve`` share, and what they make: a model choice and an InferenceConfig.

Values are checked by argparse (a bad one is a usage error naming the flag, never a traceback); the model is
resolved by :func:`resolve_model`, which downloads a known model that is not here yet (as ``ollama run`` does).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rusty_genius import Brain, InferenceConfig, Pinky
from rusty_genius.brainstem.placement import parse_bytes
from rusty_genius.core.config import CONVERSATION, Setting
from rusty_genius.core.errors import ConfigError, GeniusError
from rusty_genius.ogenius.friendly import unknown_model

if TYPE_CHECKING:
    from rusty_genius.facecrab import Resolution


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


def add_inference_flags(parser: argparse.ArgumentParser, *, many_models: bool = False) -> None:
    """Adds the model, engine and sampling flags shared by ``chat`` and ``serve`` (``many_models``: ``--model`` may
    be repeated, and gives a list)."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "-m", "--model", action="append" if many_models else "store",
        help="an alias (e.g. smollm2-135m, qwen2.5-1.5b), a Hugging Face repo id, a name from 'ogenius list', or a "
        "path to a .gguf file; default: the embedded default model"
        + ("; repeat it to serve several (the first is the default)" if many_models else ""),
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
    add_load_flags(parser)
    sampling = parser.add_argument_group("sampling")
    for setting in FLAG_SETTINGS:
        sampling.add_argument(
            setting.flag, type=_typed(setting), metavar=setting.metavar,
            help=f"{setting.help} ({setting.range.describe() if setting.range else setting.accepted()}; "
            f"default {setting.default_text})",
        )  # fmt: skip


CACHE_TYPES = ("f16", "q8_0", "q4_0")
"""The KV-cache types ``--cache-type-k`` and ``--cache-type-v`` take (``Brain``'s ``cache_type_k``/``_v``)."""


def add_load_flags(parser: argparse.ArgumentParser) -> None:
    """The llama.cpp load options, under llama-server's names: the KV cache's types, flash attention, the batch and
    micro-batch, mmap and mlock; and the KV store (where conversations survive an unload or a restart)."""
    load = parser.add_argument_group("loading (docs/models.md, Load options)")
    load.add_argument(
        "--cache-type-k", "-ctk", choices=CACHE_TYPES, metavar="TYPE",
        help="KV cache type for K: f16 (default), q8_0 (53%% of the memory) or q4_0 (28%%); less memory per "
        "sequence lets the default --parallel run more",
    )  # fmt: skip
    load.add_argument(
        "--cache-type-v", "-ctv", choices=CACHE_TYPES, metavar="TYPE",
        help="KV cache type for V: f16 (default), q8_0 or q4_0; a quantized V cache needs flash attention",
    )  # fmt: skip
    load.add_argument(
        "--flash-attn", "-fa", choices=("on", "off", "auto"), metavar="on|off|auto",
        help="flash attention (default auto: llama.cpp decides; on with the CPU backend and with a quantized V cache)",
    )  # fmt: skip
    load.add_argument(
        "--batch-size", "-b", type=bounded(int, 1, 1 << 16, "between 1 and 65536"), metavar="N",
        help="tokens per decode step while reading a prompt (default 512)",
    )  # fmt: skip
    load.add_argument(
        "--ubatch-size", "-ub", type=bounded(int, 1, 1 << 16, "between 1 and 65536"), metavar="N",
        help="tokens computed at once, at most --batch-size (default: the batch); smaller needs less memory",
    )  # fmt: skip
    load.add_argument("--no-mmap", action="store_true", help="read the model into memory instead of mapping the file")
    load.add_argument(
        "--spec-type", choices=("none", "ngram-simple", "draft"), metavar="none|ngram-simple|draft",
        help="speculative decoding: ngram-simple drafts from the conversation itself (prompt lookup; same answers, "
        "faster where they repeat the prompt), draft from --model-draft; default none (draft with --model-draft)",
    )  # fmt: skip
    load.add_argument(
        "--model-draft", "-md", metavar="GGUF",
        help="a smaller model with the same vocabulary that drafts tokens for speculative decoding",
    )  # fmt: skip
    load.add_argument(
        "--draft-max", type=bounded(int, 0, 128, "between 0 and 128"), metavar="N",
        help="most draft tokens per step (default 4 with ngram-simple, 16 with a draft model)",
    )  # fmt: skip
    load.add_argument("--mlock", action="store_true", help="lock the model in RAM (never swapped out)")
    store = load.add_mutually_exclusive_group()
    store.add_argument(
        "--kv-store", type=_folder, metavar="DIR",
        help="where conversations' KV caches are saved on unload and shutdown and restored from (default: kv-store "
        "beside the registry)",
    )  # fmt: skip
    store.add_argument(
        "--no-kv-store", action="store_true", help="do not save or restore conversations' KV caches"
    )  # fmt: skip
    load.add_argument(
        "--kv-store-size", type=_size, metavar="SIZE",
        help="disk the KV store may take, all models together, e.g. 512M or 4GiB (default 2GiB; 0: save nothing); "
        "the least recently used go first",
    )  # fmt: skip


def _folder(text: str) -> Path:
    """An argparse type: a folder, or a path where one can be made."""
    path = Path(text).expanduser()
    if not text or (path.exists() and not path.is_dir()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return path


def _size(text: str) -> int:
    """An argparse type: a size in bytes, ``8G``, ``1.5GiB``, ``512m`` or plain bytes."""
    try:
        return parse_bytes(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def brain_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Brain`` keywords the model and load flags give (those not given keep ``Brain``'s defaults). Raises
    :class:`ConfigError` naming the flags for a combination that cannot load (``ogenius`` makes it a usage error)."""
    options: dict[str, Any] = {"context_size": args.context_size, "parallel": args.parallel, "threads": args.threads}
    given = {
        "cache_type_k": args.cache_type_k,
        "cache_type_v": args.cache_type_v,
        "flash_attention": args.flash_attn,
        "batch_size": args.batch_size,
        "ubatch_size": args.ubatch_size,
        "spec_type": args.spec_type,
        "draft_max": args.draft_max,
        "draft_model": args.model_draft,
    }
    options.update({name: value for name, value in given.items() if value is not None})
    if args.no_mmap:
        options["mmap"] = False
    if args.mlock:
        options["mlock"] = True
    if args.no_kv_store:
        options["kv_store"] = False
    elif args.kv_store is not None:
        options["kv_store"] = args.kv_store
    if args.kv_store_size is not None:
        options["kv_store_size"] = args.kv_store_size
    if options.get("cache_type_v", "f16") != "f16" and options.get("flash_attention") == "off":
        raise ConfigError(
            f"--cache-type-v {options['cache_type_v']} needs flash attention, and --flash-attn is off: "
            "use --flash-attn on or auto, or --cache-type-v f16",
            "cache_type_v",
        )
    batch = options.get("batch_size", Brain.batch_size)
    if options.get("ubatch_size", 0) > batch:
        raise ConfigError(
            f"--ubatch-size {options['ubatch_size']} is more than the batch ({batch}): a micro-batch is a part of a "
            "batch; lower it or raise --batch-size",
            "ubatch_size",
        )
    return options


def _typed(setting: Setting) -> Any:
    """An argparse type for ``setting``: the schema's parse and range (a bad value is a usage error naming the flag)."""

    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = setting.kind.__name__  # argparse names the type in some messages
    return parse


FLAG_SETTINGS: tuple[Setting, ...] = CONVERSATION
"""The settings that are flags (the schema's conversation ones): ``--temperature``, ``--top-p``, …,
``--max-tokens``, ``--thinking-budget``, ``--enable-thinking``, ``--reasoning-effort``."""

SAMPLING_FLAGS = tuple(s.name for s in FLAG_SETTINGS)
"""Their argparse dests (the setting names)."""


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags that were given (a None value, as ``--seed none``, is not given), as InferenceConfig
    keywords."""
    return {name: value for name in SAMPLING_FLAGS if (value := getattr(args, name, None)) is not None}


def config_of(args: argparse.Namespace, **overrides: Any) -> InferenceConfig:
    """The complete InferenceConfig the flags ask for: the schema's defaults, then the flags (``overrides`` win)."""
    return InferenceConfig().updated(**{"show_thinking": args.show_thinking, **settings_of(args), **overrides})


@dataclass(frozen=True)
class ModelChoice:
    """A resolved model: what to load, and the name to show for it."""

    engine: Pinky | Brain
    label: str
    resolution: Resolution | None = None
    """What facecrab's resolver made of ``--model`` (None with ``--engine pinky``, which names no model)."""


def resolve_model(args: argparse.Namespace) -> ModelChoice:
    """The model the flags name, found or downloaded now (so progress and errors come before any UI starts). A name
    that names nothing raises an error listing close matches and the commands that help."""
    try:
        return _resolve(args)
    except GeniusError as err:
        raise unknown_model(err, args.model) from None


def _pinky(args: argparse.Namespace) -> Pinky:
    delay = Pinky().delay if args.pinky_delay is None else args.pinky_delay
    return Pinky(delay=delay, parallel=args.parallel or 1)


def _resolve(args: argparse.Namespace) -> ModelChoice:
    if args.engine == "pinky":
        return ModelChoice(_pinky(args), "pinky")
    # Imported here: facecrab pulls in huggingface_hub, which `ogenius --help` should not pay for.
    from rusty_genius import facecrab

    brain = brain_options(args)  # a bad combination is refused before anything is fetched
    resolution = facecrab.resolve_model(args.model, args.quant)
    if resolution.kind == "pinky":
        return ModelChoice(_pinky(args), resolution.label, resolution)
    if resolution.path is not None:  # a .gguf file, loaded as it is
        return ModelChoice(Brain(model_path=resolution.path, **brain), resolution.label, resolution)
    spec = facecrab.ensure_model(resolution)
    return ModelChoice(Brain(model_path=spec.path, **brain), resolution.label, resolution)
