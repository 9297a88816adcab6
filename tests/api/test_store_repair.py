"""The service repairs its own store: chunks left without their record (a crash or a failed write between the
chunk write and the record write) are removed at `rag serve` start and, after a failed write, by the next store call
(never inside another write of the same document)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.factory import open_store
from rag.store import ChromaStore
from tests.api.test_chroma_server import ApiProcess
from tests.api.test_document_races import _assert_whole_or_gone, _Pausing, _store, _version
from tests.conftest import make_settings


def _repaired(http: httpx.Client, timeout_s: float = 60) -> dict[str, Any]:
    """/ready once the start-up repair (run after the replica is ready) has finished."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = http.get("/ready").json()
        if ready["start_repair"] in {"done", "failed"} or time.monotonic() > deadline:
            assert ready["start_repair"] == "done", ready
            return ready  # type: ignore[no-any-return]
        time.sleep(0.1)


def _text(topic: str, sentences: int) -> str:
    return " ".join(
        f"Note {i} on {topic}: the {topic} log entry {i} was filed by crew {i % 7}." for i in range(sentences)
    )


def _listed_chunks(http: httpx.Client | TestClient) -> int:
    return sum(d["chunks"] for d in http.get("/documents").json()["documents"])


@pytest.mark.slow
def test_serve_killed_between_chunks_and_record_repairs_orphans_at_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    env = {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_DEVICE": "cpu"}
    if settings.chroma_url:
        env.update(RAG_CHROMA_URL=settings.chroma_url, RAG_COLLECTION=settings.collection)

    first = ApiProcess({**env, "RAG_TEST_KILL_BEFORE_RECORD_OF": "victim"}, tmp_path / "first.log")
    try:
        first.wait_ready()
        with httpx.Client(base_url=first.url, timeout=120) as http:
            for topic in ("harbour", "orbit", "lantern"):
                assert http.post("/documents", json={"doc_id": topic, "text": _text(topic, 12)}).status_code == 201
            with pytest.raises(httpx.TransportError):  # the process dies mid-request
                http.post("/documents", json={"doc_id": "victim", "text": _text("reactor", 300)})
        first.process.wait(timeout=30)
        assert first.process.returncode == -signal.SIGKILL, "the upload did not reach the kill point"
    finally:
        first.stop()

    second = ApiProcess(env, tmp_path / "second.log")
    try:
        second.wait_ready()
        with httpx.Client(base_url=second.url, timeout=120) as http:
            listed = {d["doc_id"] for d in http.get("/documents").json()["documents"]}
            assert listed == {"harbour", "orbit", "lantern"}
            ready = _repaired(http)
            assert ready["documents"] == 3
            assert ready["chunks"] == _listed_chunks(http), f"/ready counts {ready['chunks']} chunks: orphans left"
    finally:
        second.stop()
    assert "repaired" in (tmp_path / "second.log").read_text(), "the start did not say what it repaired"

    store = open_store(settings)
    assert store.stale_chunk_ids() == [], "chunks without their record remain in the store"


def test_failed_record_write_removes_the_new_chunks_and_keeps_the_old_version(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The store drops the connection at the record write of an update: a 503, and no chunk is left over."""
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        old = client.post("/documents", json={"doc_id": "log", "text": _text("harbour", 40)}).json()
        real_docs = ChromaStore._docs

        class DroppingDocs:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def upsert(self, **kwargs: Any) -> Any:
                raise httpx.ConnectError("connection reset by peer")

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

        with monkeypatch.context() as patch:
            patch.setattr(ChromaStore, "_docs", property(lambda self: DroppingDocs(real_docs.fget(self))))  # type: ignore[attr-defined]
            failed = client.post("/documents", json={"doc_id": "log", "text": _text("orbit", 40)})
        assert failed.status_code == 503 and failed.json()["detail"]["code"] == "store_unavailable"

        store = client.app.state.registry.get("local").service.store  # type: ignore[attr-defined]
        assert store.stale_chunk_ids() == [], "the failed write left its chunks behind"
        ready = client.get("/ready").json()
        assert ready["chunks"] == _listed_chunks(client) == old["chunks"]
        doc = client.get("/documents/log").json()
        assert doc["content_hash"] == old["content_hash"], "the old version must stay, whole"


def test_start_reindexes_a_document_whose_record_counts_chunks_the_store_lost(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """The broken document the delete/upload race used to leave (listed, chunks gone) is whole after a restart."""
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        added = client.post("/documents", json={"doc_id": "log", "text": _text("harbour", 40)}).json()
        store = client.app.state.registry.get("local").service.store  # type: ignore[attr-defined]
        store.delete_chunks(store.chunk_ids_of("log"))
        assert client.get("/ready").json()["chunks"] == 0
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _repaired(client)
        store = client.app.state.registry.get("local").service.store  # type: ignore[attr-defined]
        assert len(store.chunk_ids_of("log")) == added["chunks"] == _listed_chunks(client)
        body = client.post("/ask", json={"question": "Who filed harbour log entry 12?", "top_k": 50}).json()
        assert body["passages"] and {p["doc_id"] for p in body["passages"]} == {"log"}


def test_repair_marked_during_an_upload_does_not_run_inside_it(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A DELETE that fails (its lock request's connection drops) marks 'zeta' for repair while an upload of it holds
    its lock, its new chunks on the way: the repair waits for the upload to end. Run inside it, between the new
    chunks and the new record, it would take those chunks for debris and leave the new record without them."""
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert client.post("/documents", json={"doc_id": "zeta", "text": _version(1)}).status_code == 201
        armed, reached, proceed = threading.Event(), threading.Event(), threading.Event()
        armed.set()
        real_chunks, real_locks = ChromaStore._chunks, ChromaStore._locks
        monkeypatch.setattr(
            ChromaStore,
            "_chunks",
            property(lambda self: _Pausing(real_chunks.fget(self), "upsert", armed, reached, proceed)),  # type: ignore[attr-defined]
        )
        results: dict[str, httpx.Response] = {}
        upload = threading.Thread(
            target=lambda: results.setdefault(
                "upload", client.post("/documents", json={"doc_id": "zeta", "text": _version(2)})
            )
        )
        upload.start()
        try:
            assert reached.wait(60), "the upload never reached its chunk write"

            class DroppingLocks:
                def __init__(self, inner: Any) -> None:
                    self.inner = inner

                def add(self, **kwargs: Any) -> Any:
                    raise httpx.ConnectError("connection reset by peer")

                def __getattr__(self, name: str) -> Any:
                    return getattr(self.inner, name)

            with monkeypatch.context() as patch:
                patch.setattr(ChromaStore, "_locks", property(lambda self: DroppingLocks(real_locks.fget(self))))  # type: ignore[attr-defined]
                failed = client.delete("/documents/zeta")
            assert failed.status_code == 503 and failed.json()["detail"]["code"] == "store_unavailable"
        finally:
            proceed.set()
            upload.join(timeout=60)
        assert results["upload"].status_code == 200 and results["upload"].json()["status"] == "updated"
        assert _assert_whole_or_gone(client, _store(client), "zeta"), "the upload came last: zeta must be there"
        body = client.post("/ask", json={"question": "how many times must the zeta valve be turned?"}).json()
        assert {p["text"].split("Version ")[1].split(" ")[0] for p in body["passages"]} == {"2"}
