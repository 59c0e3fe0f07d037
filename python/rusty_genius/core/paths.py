"""Where rusty-genius keeps its files: the one folder the registry, the KV store and the rest live in.

A module of its own, importing only the standard library: loading a model asks for the KV store's folder, and
reaching it through facecrab would import huggingface_hub (hundreds of modules, a tenth of a second or more) on
every load.
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """``$RUSTY_GENIUS_HOME``, else ``$XDG_CONFIG_HOME/rusty-genius``, else ``~/.config/rusty-genius``."""
    if home := os.environ.get("RUSTY_GENIUS_HOME"):
        return Path(home)
    if xdg := os.environ.get("XDG_CONFIG_HOME"):
        return Path(xdg) / "rusty-genius"
    return Path.home() / ".config" / "rusty-genius"
