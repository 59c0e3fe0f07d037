"""A model's recommended sampling, as Ollama's Modelfile parameters give it: what its GGUF says
(``general.sampling.*``, written by llama.cpp's converter from the model's generation_config.json), else what its
models.toml entry says (``[models.<alias>.sampling]``). The service applies it under the flags and the request.

A value out of range (or of the wrong type) in a file is dropped, never an error: the model still serves, with the
global defaults for that setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rusty_genius.core.config import InferenceConfig
from rusty_genius.core.errors import ConfigError
from rusty_genius.ogenius.serve.models import Served

GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
    "general.sampling.penalty_present": "presence_penalty",
    "general.sampling.penalty_freq": "frequency_penalty",
}
"""llama.cpp's recommended-sampler keys, and the setting each is."""


def recommended_sampling(entry: Served) -> dict[str, Any]:
    """``entry``'s recommended sampling settings (InferenceConfig keywords); {} when it has none."""
    meta = entry.facts().get("metadata") or {}
    found = {setting: meta[key] for key, setting in GGUF_KEYS.items() if key in meta}
    if not found:
        found = dict(_manifest_sampling(entry))
    return valid(found)


def valid(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``settings`` that are valid, each checked alone (a bad one is dropped)."""
    kept = {}
    for name, value in settings.items():
        try:
            InferenceConfig().updated(**{name: value})
        except (ConfigError, TypeError):
            continue
        kept[name] = value
    return kept


def _manifest_sampling(entry: Served) -> Mapping[str, Any]:
    resolution = entry.resolution
    if resolution is None or resolution.kind != "model":
        return {}
    from rusty_genius.facecrab import known_models

    wanted = resolution.model.casefold()
    for alias, manifest in known_models().items():
        if alias.casefold() == wanted or (manifest.repo or "").casefold() == wanted:
            return manifest.sampling or {}
    return {}


__all__ = ["GGUF_KEYS", "recommended_sampling", "valid"]
