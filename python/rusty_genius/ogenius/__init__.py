"""ogenius: the command line (``ogenius chat``; ``download`` and ``serve`` arrive with later issues)."""

from rusty_genius.ogenius.cli import main

__all__ = ["main"]
