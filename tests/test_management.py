"""Model management through the brainstem's message protocol: load, unload, download with progress, status.

``Genius.load/unload/download/status`` send ``LoadModel``/``Unload``/``Download``/``Status`` through the Dispatcher the
Genius owns; the Dispatcher runs facecrab's fetch on a worker thread and passes its progress on. A real download
needs the mock hub, and huggingface_hub reads HF_ENDPOINT at import, so that test runs in a subprocess; the rest run
here, with facecrab's fetch replaced where the test is about the Dispatcher's side of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from rusty_genius import (
    BusyError,
    DownloadError,
    DownloadProgress,
    Genius,
    Pinky,
    StatusReport,
    UnknownModelError,
)
from rusty_genius.brainstem import Brainstem, Dispatcher, Download, Downloaded, ErrorOutput, Status

from tests.conftest import USER
from tests.ggufgen import make_gguf
from tests.hubclient import run_client
from tests.mockhub import default_hub

pytestmark = pytest.mark.pinky

FAST = Pinky(delay=0, reply_tokens=3)


@pytest.mark.anyio
async def test_load_unload_and_status_on_the_genius() -> None:
    async with Genius(engine=FAST) as g:
        report = await g.status()
        assert isinstance(report, StatusReport) and len(report.loaded) == 1
        assert g.loaded() == list(report.loaded)
        assert await g.unload() is True
        assert g.loaded() == [] and (await g.status()).loaded == ()
        assert await g.unload() is False, "not loaded: nothing to unload"
        await g.load()
        assert g.loaded() == list(report.loaded)
        # Names mean what they mean to chat(): with engine=Pinky(...), every name is that stub.
        assert await g.unload("smollm2-135m") is True
        await g.load("smollm2-135m")
        assert g.loaded() == list(report.loaded)

        stream = g.chat(USER)
        first = await stream.__anext__()
        with pytest.raises(BusyError):
            await g.unload()  # a request holds it: the error comes back as the exception itself
        await stream.aclose()
        assert first.kind == "process_start"

        with pytest.raises(UnknownModelError) as err:
            await Genius(engine="brain").load("no-such-model-anywhere")  # resolved first: never started
        assert err.value.name == "no-such-model-anywhere", "the error keeps its attributes"


@pytest.mark.anyio
async def test_the_dispatcher_downloads_off_the_loop_and_stops_when_the_caller_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rusty_genius import facecrab

    step = threading.Event()
    stopped: list[BaseException] = []
    finished = threading.Event()

    def fake_fetch(model: str | None, quant: str | None, *, on_progress: Any) -> Any:
        try:
            for done in (0, 10, 20, 30):
                on_progress(DownloadProgress(f"{model}:{quant}", "m.gguf", done, 30))
                assert step.wait(5), "the test never let the fetch go on"
                step.clear()
        except BaseException as err:
            stopped.append(err)
            raise
        finally:
            finished.set()
        return facecrab.ModelSpec(name=f"{model}:{quant}", repo="o/m", gguf_repo="o/m", quant=quant or "", files=())

    monkeypatch.setattr(facecrab, "ensure_model", fake_fetch)
    dispatcher = Dispatcher(Brainstem())

    # Every progress record comes through, then the result; the loop serves other messages meanwhile.
    outputs: list[object] = []
    async for output in dispatcher.handle(Download("o/m", "Q4_K_M")):
        outputs.append(output)
        if isinstance(output, DownloadProgress):
            [status] = [o async for o in dispatcher.handle(Status())]  # the fetch is blocked on its thread now
            assert isinstance(status, StatusReport)
            step.set()
    assert [o.done for o in outputs if isinstance(o, DownloadProgress)] == [0, 10, 20, 30]
    assert isinstance(outputs[-1], Downloaded) and outputs[-1].model == "o/m:Q4_K_M"

    # A caller that stops listening stops the fetch at its next chunk.
    finished.clear()
    async with aclosing(dispatcher.handle(Download("o/m", "Q8_0"))) as listening:
        first = await listening.__anext__()
        assert isinstance(first, DownloadProgress)
    step.set()
    assert await asyncio.to_thread(finished.wait, 5)
    assert len(stopped) == 1 and isinstance(stopped[0], DownloadError)
    await dispatcher.brainstem.aclose()


@pytest.mark.anyio
async def test_download_errors_are_records_and_exceptions(monkeypatch: pytest.MonkeyPatch) -> None:
    dispatcher = Dispatcher()  # no brainstem yet: Download and Status are still served
    [out] = [o async for o in dispatcher.handle(Download("pinky"))]
    assert isinstance(out, ErrorOutput) and out.error.type == "ConfigError", "the stub has nothing to download"
    [status] = [o async for o in dispatcher.handle(Status())]
    assert isinstance(status, StatusReport) and status.loaded == ()
    g = Genius(engine=FAST)  # not started: download works, load does not
    with pytest.raises(UnknownModelError):
        await g.download("nothing-by-this-name")
    with pytest.raises(Exception, match="not started"):
        await g.load()


def test_download_with_progress_from_a_mock_hub(tmp_path: Path) -> None:
    snippet = """
    import asyncio, os
    os.environ["RUSTY_GENIUS_HOME"] = config
    from rusty_genius import Genius

    async def go():
        seen = []
        async with Genius(engine="pinky") as g:
            spec = await g.download(repo, on_progress=seen.append)
            report = await g.status()
        emit("progress", [[p.model, p.file, p.done, p.total] for p in seen])
        emit("spec", name=spec.name, size=spec.size, path=str(spec.path))
        emit("status", models=[m.name for m in report.models], loaded=list(report.loaded))

    asyncio.run(go())
    """
    with default_hub() as hub:
        out = run_client(
            hub, tmp_path, snippet, chunk_size=1 << 20, repo="Qwen/Qwen2.5-1.5B-Instruct", config=str(tmp_path / "c")
        )
    spec = out["spec"]
    assert spec["name"] == "qwen2.5-1.5b:Q4_K_M" and Path(spec["path"]).is_file()
    progress = out["progress"]
    assert len(progress) >= 2, "one record per chunk"
    assert {p[0] for p in progress} == {"qwen2.5-1.5b:Q4_K_M"} and {p[1] for p in progress} == {Path(spec["path"]).name}
    assert [p[2] for p in progress] == sorted(p[2] for p in progress)
    assert progress[-1][2] == progress[-1][3] == spec["size"]
    assert out["status"] == {"models": ["qwen2.5-1.5b:Q4_K_M"], "loaded": ["pinky"]}


def test_remove_model_deletes_only_what_it_owns(tmp_path: Path) -> None:
    from rusty_genius import facecrab

    registry = facecrab.Registry(tmp_path / "config")
    owned_file = tmp_path / "hf" / "owned-Q4_K_M.gguf"
    owned_file.parent.mkdir()
    owned_file.write_bytes(make_gguf(seed=3))
    owned = facecrab.ModelSpec(
        name="owned:Q4_K_M", repo="o/owned", gguf_repo="o/owned-GGUF", quant="Q4_K_M", files=(owned_file.name,),
        size=owned_file.stat().st_size, paths=(owned_file,), owned=True,
    )  # fmt: skip
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(make_gguf(seed=4))
    facecrab.import_model(str(mine), "mine", registry=registry)
    registry.put(owned)

    kept = facecrab.remove_model("mine", delete_files=True, registry=registry)
    assert kept.deleted == () and kept.kept == (mine.resolve(),) and mine.is_file(), "never an imported file"
    assert facecrab.remove_model("owned:Q4_K_M", delete_files=False, registry=registry).kept == (owned_file,)
    assert owned_file.is_file()
    registry.put(owned)
    gone = facecrab.remove_model("owned:Q4_K_M", delete_files=True, registry=registry)
    assert gone.deleted == (owned_file,) and not owned_file.exists()
    assert registry.models() == {}

    registry.put(dataclasses.replace(owned, name="owned-too:Q4_K_M", paths=()))
    with pytest.raises(UnknownModelError) as err:
        facecrab.remove_model("owned-to:Q4_K_M", delete_files=True, registry=registry)
    assert err.value.matches == ["owned-too:Q4_K_M"]
    assert "registered: owned-too:Q4_K_M" in str(err.value)
