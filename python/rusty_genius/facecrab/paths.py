"""Where facecrab keeps things, and the check every hub-supplied file name passes before it becomes a path."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from rusty_genius.core.errors import DownloadError


def config_dir() -> Path:
    """``$RUSTY_GENIUS_HOME``, else ``$XDG_CONFIG_HOME/rusty-genius``, else ``~/.config/rusty-genius``."""
    if home := os.environ.get("RUSTY_GENIUS_HOME"):
        return Path(home)
    if xdg := os.environ.get("XDG_CONFIG_HOME"):
        return Path(xdg) / "rusty-genius"
    return Path.home() / ".config" / "rusty-genius"


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_repo_path(name: str) -> str:
    """Returns ``name`` if it is a safe relative path inside a repo; raises :class:`DownloadError` otherwise.

    The hub is not trusted: a file name with ``..``, an absolute path, a backslash, a drive letter, a NUL or an
    empty component could escape the cache directory once joined to it.
    """
    problem = None
    if not name or "\x00" in name:
        problem = "is empty or holds a NUL"
    elif "\\" in name:
        problem = "contains a backslash"
    elif name.startswith("/") or _DRIVE.match(name):
        problem = "is absolute"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        problem = "has an empty, '.' or '..' component"
    elif PurePosixPath(name).is_absolute():
        problem = "is absolute"
    if problem:
        raise DownloadError(f"refusing the hub's file name {name!r}: it {problem}")
    return name
