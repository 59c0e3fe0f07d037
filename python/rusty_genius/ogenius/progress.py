"""Download progress on stderr: the bars ``ogenius download`` draws from facecrab's progress reports.

They look and behave as huggingface_hub's own bars did when it drew them: one per file, shown on a terminal (or
where ``TQDM_POSITION=-1`` forces them), never with ``HF_HUB_DISABLE_PROGRESS_BARS``. The library reports; only the
CLI draws.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any

from rusty_genius import DownloadProgress


class ProgressBars:
    """An ``on_progress`` callback (for :func:`rusty_genius.facecrab.ensure_model`) that draws a bar per file."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, progress: DownloadProgress) -> None:
        bar = self._bars.get(progress.file)
        if bar is None:
            bar = self._bars[progress.file] = _bar(progress)
        bar.update(progress.done - bar.n)
        if progress.total is not None and progress.done >= progress.total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _bar(progress: DownloadProgress) -> Any:
    # Imported here: huggingface_hub is loaded only by the commands that download. Its tqdm honours
    # HF_HUB_DISABLE_PROGRESS_BARS; disable=None shows the bar on a terminal only, as huggingface_hub decides.
    from huggingface_hub.utils.tqdm import tqdm

    make: Any = tqdm  # untyped (tqdm has no type information)
    name = PurePosixPath(progress.file).name
    return make(
        total=progress.total,
        unit="B",
        unit_scale=True,
        desc=name if len(name) <= 40 else f"(…){name[-40:]}",
        disable=False if os.environ.get("TQDM_POSITION") == "-1" else None,
        name="huggingface_hub.http_get",
    )
