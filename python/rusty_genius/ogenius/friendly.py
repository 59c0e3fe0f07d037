"""Errors written for a person: what went wrong, and what to do next."""

from __future__ import annotations

from rusty_genius.core.errors import GeniusError, ModelNotFoundError, QuantNotFoundError, UnknownModelError


def unknown_model(err: GeniusError, name: str | None) -> GeniusError:
    """The error for a model name that names nothing (here, or on the hub), with close matches and the commands that
    help; any other error as it is."""
    if isinstance(err, UnknownModelError):
        matches = err.matches
    elif isinstance(err, ModelNotFoundError) and not isinstance(err, QuantNotFoundError) and name is not None:
        # The hub has no such repo (or no GGUF of it): the names known here may still be what was meant.
        from rusty_genius.facecrab import close_matches

        matches = close_matches(name)
    else:
        return err
    hint = ""
    if matches:
        hint += f"\n  did you mean: {', '.join(matches)}?"
    hint += "\n  'ogenius list' shows the models you have; 'ogenius download OWNER/REPO' fetches one from Hugging Face"
    if isinstance(err, UnknownModelError):
        return UnknownModelError(f"{err}{hint}", name=err.name, matches=err.matches)
    return ModelNotFoundError(f"{err}{hint}")
