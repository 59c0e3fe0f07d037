"""A model's recommended sampling, as Ollama's Modelfile parameters give it: what its GGUF says
(``general.sampling.*``, written by llama.cpp's converter from the model's generation_config.json), else what its
models.toml entry says (``[models.<alias>.sampling]``). ``ogenius serve`` applies it under its flags and each
request's settings; ``ogenius chat`` under its flags and ``/set``.

A value out of range (or of the wrong type) in a file is dropped, never an error: the model still serves, with the
global defaults for that setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rusty_genius import Brain, Pinky, _native
from rusty_genius.core.config import InferenceConfig
from rusty_genius.core.errors import ConfigError, GeniusError

if TYPE_CHECKING:
    from rusty_genius.facecrab import Resolution

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


def recommended_sampling(metadata: Mapping[str, Any], resolution: Resolution | None) -> dict[str, Any]:
    """The recommended sampling settings (InferenceConfig keywords) of a model whose GGUF has ``metadata`` and
    that facecrab resolved as ``resolution`` (None: a file or Pinky); {} when it has none."""
    found = {setting: metadata[key] for key, setting in GGUF_KEYS.items() if key in metadata}
    if not found:
        found = dict(_manifest_sampling(resolution))
    return valid(found)


def recommended_for(engine: Pinky | Brain, resolution: Resolution | None) -> dict[str, Any]:
    """:func:`recommended_sampling` of a model to load (its GGUF header is read; Pinky has none)."""
    if isinstance(engine, Pinky):
        return {}
    try:
        metadata = _native.check_gguf(os.fspath(engine.model_path)).get("metadata") or {}
    except GeniusError:  # its load will say what is wrong
        metadata = {}
    return recommended_sampling(metadata, resolution)


def model_defaults(recommended: Mapping[str, Any], given: Mapping[str, Any]) -> InferenceConfig:
    """The config a model answers with: the schema's defaults, under its ``recommended`` sampling, under the
    settings a person ``given`` (flags, ``/set``)."""
    return InferenceConfig().updated(**recommended).updated(**given)


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


def _manifest_sampling(resolution: Resolution | None) -> Mapping[str, Any]:
    if resolution is None or resolution.kind != "model":
        return {}
    from rusty_genius.facecrab import known_models

    wanted = resolution.model.casefold()
    for alias, manifest in known_models().items():
        if alias.casefold() == wanted or (manifest.repo or "").casefold() == wanted:
            return manifest.sampling or {}
    return {}


__all__ = ["GGUF_KEYS", "model_defaults", "recommended_for", "recommended_sampling", "valid"]
