"""rusty-genius: a local-first LLM runtime for Python, with a Rust core.

    import rusty_genius

    async with rusty_genius.Genius(engine="pinky") as g:
        async for ev in g.chat([{"role": "user", "content": "hi"}]):
            ...

See :class:`Genius`, :class:`InferenceConfig` and the event kinds in :mod:`rusty_genius.core.events`.
"""

from rusty_genius import core
from rusty_genius._native import __version__
from rusty_genius.core import *  # noqa: F403 (the shared vocabulary: events, config, errors)
from rusty_genius.genius import Brain, Genius, Message, Pinky

__all__ = ["Brain", "Genius", "Message", "Pinky", "__version__"]
__all__ += core.__all__
