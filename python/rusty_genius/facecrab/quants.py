"""Reading quantizations and shard sets out of GGUF file names.

A name like ``qwen2.5-1.5b-instruct-q4_k_m-00001-of-00002.gguf`` says its quant (Q4_K_M) and that it is shard 1
of 2. Quant names contain the separators themselves (``Q4_K_M``), so a file's quant is the longest known name that
stands between separators; ``Q4_K`` inside ``Q4_K_M`` does not count.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

KNOWN_QUANTS = (
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS",
    "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ2_0", "TQ1_0", "MXFP4",
)  # fmt: skip

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_PATTERNS = {q: re.compile(rf"(?:^|[-._/]){re.escape(q)}(?=[-._]|$)", re.IGNORECASE) for q in KNOWN_QUANTS}


def quant_of(filename: str) -> str | None:
    """The quant a GGUF file name states, upper-case; None when it states none."""
    stem = _SHARD.sub(".gguf", filename)
    found = [q for q, pattern in _PATTERNS.items() if pattern.search(stem)]
    return max(found, key=len) if found else None


@dataclass(frozen=True)
class GgufSet:
    """One loadable model: a single GGUF file, or every shard of a sharded one, in order."""

    quant: str
    files: tuple[str, ...]


def group(filenames: list[str]) -> list[GgufSet]:
    """The loadable models among ``filenames``: complete shard sets and single files whose quant is known."""
    singles: list[GgufSet] = []
    shards: dict[tuple[str, int], dict[int, str]] = defaultdict(dict)
    for name in sorted(filenames):
        if not name.lower().endswith(".gguf"):
            continue
        quant = quant_of(name)
        if quant is None:
            continue
        if m := _SHARD.search(name):
            shards[(name[: m.start()], int(m.group(2)))][int(m.group(1))] = name
        elif "mmproj" not in name.lower():
            singles.append(GgufSet(quant, (name,)))
    for (_prefix, total), parts in shards.items():
        if sorted(parts) == list(range(1, total + 1)):
            singles.append(GgufSet(quant_of(parts[1]) or "", tuple(parts[i] for i in range(1, total + 1))))
    # Top-level files before ones in folders, then by name: a stable, predictable choice.
    return sorted(singles, key=lambda s: (s.files[0].count("/"), s.files[0]))
