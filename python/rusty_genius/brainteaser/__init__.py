"""brainteaser: the fixture-driven QA harness. Each ``fixtures/{ORG}/{REPO}/{QUANT}/{TEST}.md`` is a conversation
with expectations; the harness gets the model through facecrab, plays the conversation through the facade, and
reports each fixture as passed, failed or skipped (with the reason), with tokens/s.

Run it as ``ogenius teaser [PATH] [--engine brain|pinky] [--offline]`` or through pytest (each fixture is a test
item; ``-p rusty_genius.brainteaser.plugin``).
"""

from rusty_genius.brainteaser.fixture import Check, Fixture, FixtureError, Turn, discover, load, parse, root_of
from rusty_genius.brainteaser.runner import Answer, ModelSource, Outcome, check, run_all, run_one

__all__ = [
    "Answer",
    "Check",
    "Fixture",
    "FixtureError",
    "ModelSource",
    "Outcome",
    "Turn",
    "check",
    "discover",
    "load",
    "parse",
    "root_of",
    "run_all",
    "run_one",
]
