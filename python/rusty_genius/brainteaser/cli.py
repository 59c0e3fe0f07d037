"""``ogenius teaser [PATH] [--engine brain|pinky] [--offline]``: run fixtures and print one line per fixture.

The report goes to stdout; exit status 1 when a fixture failed, 0 when every one passed or was skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rusty_genius.brainteaser.fixture import Fixture, FixtureError, discover, load, root_of
from rusty_genius.brainteaser.runner import ModelSource, Outcome, run_all

LABEL = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def _default_root() -> Path:
    return Path("fixtures")


def _print(outcome: Outcome) -> None:
    f = outcome.fixture
    speed = f"{outcome.tokens_per_s:7.1f} tok/s" if outcome.tokens_per_s else " " * 13
    line = f"{LABEL[outcome.status]}  {f.test_id:<64} {speed} {outcome.seconds:6.1f}s"
    if outcome.status != "passed":
        line += f"  {outcome.reason}"
    print(line, flush=True)
    for extra in outcome.failures[1:]:
        print(f"      {extra}")


def teaser(args: argparse.Namespace) -> int:
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    target = Path(args.path) if args.path else _default_root()
    if not target.exists():
        print(f"ogenius teaser: no fixtures at {target} (give a fixtures directory or a fixture file)", file=sys.stderr)
        return 2
    fixtures: list[Fixture] = []
    broken: list[str] = []
    for path in discover(target):
        try:
            fixture = load(path, root_of(path))
        except FixtureError as err:
            broken.append(str(err))
            continue
        if args.engine is None or (args.engine == "pinky") == fixture.is_pinky:
            fixtures.append(fixture)
    for message in broken:
        print(f"FAIL  {message}")
    counts = {"passed": 0, "failed": len(broken), "skipped": 0}
    for outcome in run_all(fixtures, ModelSource(), _print):
        counts[outcome.status] += 1
    print(", ".join(f"{n} {status}" for status, n in counts.items()))
    return 1 if counts["failed"] else 0


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "teaser",
        help="run the brainteaser QA fixtures (fixtures/ORG/REPO/QUANT/TEST.md) and report each",
        description="Run brainteaser fixtures: each is a conversation with expectations, played on its model.",
    )
    p.add_argument("path", nargs="?", help="a fixtures directory or one fixture file (default: ./fixtures)")
    p.add_argument(
        "--engine", choices=("brain", "pinky"), help="run only the model fixtures (brain) or only the Pinky ones"
    )
    p.add_argument("--offline", action="store_true", help="never touch the network; models not here are skipped")
    p.set_defaults(run=teaser)
