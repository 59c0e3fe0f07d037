"""Where facecrab keeps things, and the check every hub-supplied file name passes before it becomes a path."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from rusty_genius.core.errors import DownloadError
from rusty_genius.core.paths import config_dir

__all__ = ["config_dir", "safe_repo_path"]


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
