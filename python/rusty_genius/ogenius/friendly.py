"""Errors written for a person: what went wrong, and what to do next."""

from __future__ import annotations

import difflib

from rusty_genius.core.errors import ConfigError, GeniusError, ModelNotFoundError, QuantNotFoundError


def close_models(name: str) -> list[str]:
    """Known model names (aliases, their repos, registered names) that look like ``name``."""
    from rusty_genius import facecrab

    known: set[str] = set()
    for alias, manifest in facecrab.known_models().items():
        known.add(alias)
        if manifest.repo:
            known.add(manifest.repo)
    try:
        known.update(facecrab.Registry().models())
    except GeniusError:
        pass
    lowered = {k.lower(): k for k in known}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[m] for m in matches]


def unknown_model(err: GeniusError, name: str | None) -> GeniusError:
    """The error for a model name that names nothing, with close matches and the commands that help."""
    if isinstance(err, QuantNotFoundError) or name is None:
        return err
    if not isinstance(err, ModelNotFoundError) and not str(err).startswith("unknown model"):
        return err
    hint = ""
    matches = close_models(name)
    if matches:
        hint += f"\n  did you mean: {', '.join(matches)}?"
    hint += (
        "\n  'ogenius list' shows the models you have; 'ogenius download OWNER/REPO' fetches one from Hugging Face"
    )
    kind = ModelNotFoundError if isinstance(err, ModelNotFoundError) else ConfigError
    return kind(f"{err}{hint}")
