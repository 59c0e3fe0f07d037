"""Resolution on the Hugging Face Hub: from a model name to the GGUF file (or shard set) to fetch.

Order: the manifest's known GGUF repo, the repo itself, ``<repo>-GGUF``, then a hub search for repos that declare
themselves quantizations of the repo (``base_model:quantized:<repo>``). Errors name what exists: no such repo; no
GGUF anywhere; or the quants that are available when the one asked for is not. File names from the hub that could
escape a directory are dropped here (and checked again before any download).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from huggingface_hub import HfApi
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from rusty_genius.core.errors import DownloadError, ModelNotFoundError, QuantNotFoundError
from rusty_genius.facecrab.manifest import ModelSpec, UserManifest
from rusty_genius.facecrab.paths import safe_repo_path
from rusty_genius.facecrab.quants import GgufSet, group

log = logging.getLogger("rusty_genius.facecrab")

SEARCH_LIMIT = 20


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class Listing:
    repo: str
    revision: str | None
    files: dict[str, HubFile]

    def gguf_sets(self) -> list[GgufSet]:
        return group(list(self.files))


def _safe(files: Iterable[HubFile], repo: str) -> dict[str, HubFile]:
    safe = {}
    for f in files:
        try:
            safe[safe_repo_path(f.path)] = f
        except DownloadError as err:
            log.warning("%s: %s", repo, err)
    return safe


def list_repo(api: HfApi, repo: str) -> Listing | None:
    """The files of ``repo`` with sizes and LFS sha256, or None when there is no such repo."""
    try:
        info = api.model_info(repo, files_metadata=True)
    except GatedRepoError as err:
        raise DownloadError(f"{repo} is gated: accept its terms on the hub and set HF_TOKEN ({err})") from err
    except RepositoryNotFoundError:
        return None
    files = []
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        files.append(HubFile(sibling.rfilename, sibling.size or 0, sha))
    return Listing(repo, info.sha, _safe(files, repo))


def _searched(api: HfApi, repo: str) -> list[str]:
    found = api.list_models(filter=f"base_model:quantized:{repo}", limit=SEARCH_LIMIT)
    return [m.id for m in found if m.id]


def resolve(request: UserManifest, api: HfApi | None = None) -> ModelSpec:
    """Finds the GGUF repo and the file set for ``request.quant``."""
    api = api or HfApi()
    repo = request.repo
    if not repo:
        raise ModelNotFoundError(f"{request.name}: no repo to look for")
    quant = (request.quant or "Q4_K_M").upper()
    tried: list[str] = []
    base_exists = False
    first_with_gguf: Listing | None = None
    seen: set[str] = set()

    def candidates() -> Iterable[str]:
        yield from (r for r in (request.gguf_repo, repo, f"{repo}-GGUF") if r)
        if base_exists:
            yield from _searched(api, repo)

    for candidate in candidates():
        if candidate.lower() in seen:
            continue
        seen.add(candidate.lower())
        listing = list_repo(api, candidate)
        if listing is None:
            tried.append(f"{candidate} (no such repo)")
            continue
        base_exists = base_exists or candidate.lower() == repo.lower()
        sets = listing.gguf_sets()
        if not sets:
            tried.append(f"{candidate} (no GGUF files)")
            continue
        first_with_gguf = first_with_gguf or listing
        for gguf in sets:
            if gguf.quant == quant:
                return _spec(request, listing, gguf)
        tried.append(f"{candidate} (no {quant})")

    if first_with_gguf is not None:
        available = sorted({s.quant for s in first_with_gguf.gguf_sets()})
        raise QuantNotFoundError(
            f"{quant} is not available for {repo}; {first_with_gguf.repo} has {', '.join(available)} "
            f"(pick one with --quant)",
            available,
        )
    if not base_exists:
        raise ModelNotFoundError(f"no model {repo!r} on the hub (tried {'; '.join(tried)})")
    raise ModelNotFoundError(
        f"{repo} has no GGUF files and no GGUF conversion of it was found (tried {'; '.join(tried)}; searched for "
        f"quantizations of {repo})"
    )


def _spec(request: UserManifest, listing: Listing, gguf: GgufSet) -> ModelSpec:
    files = [listing.files[name] for name in gguf.files]
    hashes = tuple(f.sha256 or "" for f in files)
    return ModelSpec(
        name=request.name or request.repo or listing.repo,
        repo=request.repo or listing.repo,
        gguf_repo=listing.repo,
        quant=gguf.quant,
        files=gguf.files,
        sha256=hashes if all(hashes) else (),
        size=sum(f.size for f in files),
        revision=listing.revision,
        context_length=request.context_length,
        template=request.template,
        thinks=bool(request.thinks),
    )
