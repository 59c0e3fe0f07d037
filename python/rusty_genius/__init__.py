"""rusty-genius: a local-first LLM runtime for Python, with a Rust core.

    import rusty_genius

    async with rusty_genius.Genius(engine="pinky") as g:
        async for ev in g.chat([{"role": "user", "content": "hi"}]):
            ...

See :class:`Genius`, :class:`InferenceConfig` and the event kinds in :mod:`rusty_genius.core.events`.
"""

import atexit

# _cuda_libs first: in the CUDA build it makes NVIDIA's runtime libraries loadable before _native is imported.
from rusty_genius import _cuda_libs, _native, core  # noqa: F401 (_cuda_libs is imported for that effect)
from rusty_genius._native import __version__, build_info
from rusty_genius.brainstem import CortexStrategy, HibernateAfter, Immediate, KeepAlive, StatusReport, strategy_of
from rusty_genius.core import *  # noqa: F403 (the shared vocabulary: events, config, errors)
from rusty_genius.genius import Answer, Brain, ChatStream, Embeddings, Genius, Message, ModelInfo, Pinky

__all__ = [
    "Answer",
    "Brain",
    "ChatStream",
    "CortexStrategy",
    "Embeddings",
    "Genius",
    "HibernateAfter",
    "Immediate",
    "KeepAlive",
    "Message",
    "ModelInfo",
    "Pinky",
    "StatusReport",
    "__version__",
    "build_info",
    "strategy_of",
]
__all__ += core.__all__

# Let runtime threads finish handing results to asyncio before the interpreter finalizes (see runtime.rs).
atexit.register(_native._drain_callbacks)
