"""llama-server's request extensions on the OpenAI routes (chat, completions, the WebSocket's chat frames): honoured
where they map onto the engine, refused with a 400 naming the field where they do not; never silently ignored.

Honoured: ``json_schema`` (a top-level JSON schema: as ``response_format`` of type ``json_schema``), ``grammar``
(openai_api), ``n_predict`` (as ``max_tokens``), ``n_probs`` (as ``logprobs`` with that many ``top_logprobs``),
``cache_prompt: true`` (the prompt cache is always used). Accepted at their off values only (each turns a sampler or a
feature off, which is what the engine does): ``dry_multiplier: 0`` (with any other ``dry_*``), ``mirostat: 0`` (with
``mirostat_tau`` / ``mirostat_eta``), ``typical_p: 1``, ``xtc_probability: 0`` (with ``xtc_threshold``),
``top_n_sigma`` below 0, ``dynatemp_range: 0`` (with ``dynatemp_exponent``), ``repeat_last_n: 64`` (the engine's
window), ``min_keep: 0``, ``ignore_eos``, ``timings_per_token``, ``return_progress`` and ``post_sampling_probs`` false,
``n_keep: 0``, ``id_slot: -1``, ``t_max_predict_ms: 0``. Anything else in these fields (and ``samplers``, ``lora``,
``n_indent``, ``n_cmpl``) is a 400 that names the field and says what is supported (docs/llama-server.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rusty_genius.core.errors import shown
from rusty_genius.ogenius.serve.tools_api import BadField

Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is(expected: float) -> Check:
    return lambda v: _number(v) and v == expected


def _false(value: Any) -> bool:
    return value is False


OFF: dict[str, tuple[Check, str]] = {
    "dry_multiplier": (_is(0), "0 (the DRY sampler is not available)"),
    "mirostat": (_is(0), "0 (Mirostat is not available)"),
    "typical_p": (_is(1), "1 (locally typical sampling is not available)"),
    "xtc_probability": (_is(0), "0 (the XTC sampler is not available)"),
    "top_n_sigma": (lambda v: _number(v) and v < 0, "-1 (top-n-sigma is not available)"),
    "dynatemp_range": (_is(0), "0 (dynamic temperature is not available)"),
    "repeat_last_n": (_is(64), "64 (the repetition penalties look back over the last 64 tokens)"),
    "min_keep": (_is(0), "0"),
    "ignore_eos": (_false, "false (use max_tokens to bound the answer)"),
    "timings_per_token": (_false, "false (timings come with the last chunk)"),
    "return_progress": (_false, "false (prompt progress is not streamed)"),
    "post_sampling_probs": (_false, "false (logprobs are the model's raw distribution)"),
    "n_keep": (_is(0), "0 (context shift is not available: a prompt over the context is refused)"),
    "id_slot": (_is(-1), "-1 (the server picks the slot)"),
    "t_max_predict_ms": (_is(0), "0 (use max_tokens)"),
}
"""A field whose only supported value turns its feature off: the check, and what to say it accepts."""

DEPENDENT = {
    "dry_base": "dry_multiplier", "dry_allowed_length": "dry_multiplier", "dry_penalty_last_n": "dry_multiplier",
    "dry_sequence_breakers": "dry_multiplier", "mirostat_tau": "mirostat", "mirostat_eta": "mirostat",
    "xtc_threshold": "xtc_probability", "dynatemp_exponent": "dynatemp_range",
}  # fmt: skip
"""Parameters of a feature that is off: accepted (they change nothing, as in llama-server)."""

REFUSED = {
    "samplers": "the sampler order is fixed (logit bias, grammar, penalties, top_k, top_p, min_p, temperature)",
    "lora": "LoRA adapters are not supported",
    "n_indent": "indentation-aware stopping is not supported",
    "n_cmpl": "use 'n' for several choices",
}
"""Fields with no supported value (None is always accepted: it means the default)."""


def normalized(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with llama-server's honoured extensions in OpenAI's terms; raises :class:`~.tools_api.BadField` (a
    400 naming the field) for the ones that cannot be honoured."""
    out = dict(body)
    for name, (check, accepted) in OFF.items():
        value = out.pop(name, None)
        if value is not None and not check(value):
            raise BadField(f"'{name}' {shown(value)} is not supported: it accepts only {accepted}", name)
    for name in DEPENDENT:
        out.pop(name, None)
    for name, why in REFUSED.items():
        if out.pop(name, None) is not None:
            raise BadField(f"'{name}' is not supported: {why}", name)
    cache = out.pop("cache_prompt", None)
    if cache is not None and cache is not True:
        why = "the prompt cache is always used (answers do not depend on it)"
        raise BadField(f"'cache_prompt' accepts only true: {why}", "cache_prompt")
    n_predict = out.pop("n_predict", None)
    if n_predict is not None and n_predict != -1 and out.get("max_tokens") is None:  # -1: up to the context
        out["max_tokens"] = n_predict  # checked as max_tokens, named so in an error
    schema = out.pop("json_schema", None)
    if schema is not None:
        if not isinstance(schema, dict):
            raise BadField("'json_schema' must be a JSON schema (an object)", "json_schema")
        if out.get("response_format") is not None:
            raise BadField("give either 'json_schema' or 'response_format', not both", "json_schema")
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    n_probs = out.pop("n_probs", None)
    if n_probs is not None:
        if not (isinstance(n_probs, int) and not isinstance(n_probs, bool) and 0 <= n_probs <= 20):
            raise BadField(f"'n_probs' must be an integer from 0 to 20 (got {shown(n_probs)})", "n_probs")
        if n_probs and out.get("logprobs") is None:
            out["logprobs"], out["top_logprobs"] = True, n_probs
    return out


FIELDS = frozenset((*OFF, *DEPENDENT, *REFUSED, "cache_prompt", "n_predict", "n_probs", "json_schema"))
"""Every field :func:`normalized` reads."""

__all__ = ["DEPENDENT", "FIELDS", "OFF", "REFUSED", "normalized"]
