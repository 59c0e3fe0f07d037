"""The pytest plugin: every fixture file under a ``fixtures`` directory becomes a test item.

Enable it with ``-p rusty_genius.brainteaser.plugin`` (this project's pyproject does). Pinky fixtures are marked
``pinky``, the others ``real_engine``; a fixture whose model cannot be had is skipped with the reason, a broken
expectation fails with every failure listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rusty_genius.brainteaser.fixture import Fixture, load, root_of
from rusty_genius.brainteaser.runner import ModelSource, run_one

_SOURCE = pytest.StashKey[ModelSource]()


class FixtureFailed(Exception):
    """A fixture's expectations were not met."""


def _is_fixture(path: Path) -> bool:
    return path.suffix == ".md" and path.name.lower() != "readme.md" and "fixtures" in path.parts


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pinky: runs on the Pinky stub engine only (no model weights)")
    config.addinivalue_line("markers", "real_engine: runs Brain (llama.cpp) on a real model")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_fixture(file_path):
        return FixtureFile.from_parent(parent, path=file_path)
    return None


def pytest_sessionfinish(session: pytest.Session) -> None:
    source = session.stash.get(_SOURCE, None)
    if source is not None:
        source.close()


class FixtureFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        fixture = load(self.path, root_of(self.path))
        item = FixtureItem.from_parent(self, name=fixture.name, fixture=fixture)
        item.add_marker("pinky" if fixture.is_pinky else "real_engine")
        yield item


class FixtureItem(pytest.Item):
    def __init__(self, *, fixture: Fixture, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fixture = fixture

    def runtest(self) -> None:
        stash = self.session.stash
        if _SOURCE not in stash:
            stash[_SOURCE] = ModelSource()
        outcome = run_one(self.fixture, stash[_SOURCE])
        if outcome.status == "skipped":
            pytest.skip(outcome.reason)
        if outcome.status == "failed":
            raise FixtureFailed("\n".join(outcome.failures or [outcome.reason]))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, FixtureFailed):
            return f"{self.fixture.test_id} failed:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"fixture {self.fixture.test_id} ({self.fixture.model_id})"
