"""Rebuilding a lost or corrupt registry from what is on disk: the GGUF files in the Hugging Face cache."""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from rusty_genius.facecrab.manifest import ModelSpec
from rusty_genius.facecrab.quants import group

log = logging.getLogger("rusty_genius.facecrab")


def models_in_cache() -> dict[str, ModelSpec]:
    """One entry per complete GGUF set found in the cache, named ``<repo>:<QUANT>``. Hashes are not recomputed:
    the files were verified when first registered, and the entries are marked as not owned (never deleted)."""
    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return {}
    models: dict[str, ModelSpec] = {}
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            by_name = {_relative(f.file_path, revision.snapshot_path): f for f in revision.files}
            for gguf in group(list(by_name)):
                key = f"{repo.repo_id}:{gguf.quant}"
                files = [by_name[name] for name in gguf.files]
                models[key] = ModelSpec(
                    name=key, repo=repo.repo_id, gguf_repo=repo.repo_id, quant=gguf.quant, files=gguf.files,
                    size=sum(f.size_on_disk for f in files), revision=revision.commit_hash,
                    paths=tuple(Path(f.file_path) for f in files), owned=False,
                )  # fmt: skip
    log.info("found %d GGUF model(s) in the Hugging Face cache", len(models))
    return models


def _relative(path: Path, snapshot: Path) -> str:
    return path.relative_to(snapshot).as_posix()
