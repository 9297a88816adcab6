"""Writes and deletes of one document are serialised, also across replicas sharing one store.

The invariant, after any interleaving: a listed document has all its chunks, and an unlisted one has none.
Loser of a race: a DELETE that arrives while an upload is writing waits for it, then removes the document completely
(204); an upload that arrives while a DELETE is running waits for it, then stores the document completely ("added").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.store import ChromaStore
from tests.conftest import LiveServer, make_settings

QUESTION = "how many times must the zeta valve be turned?"


def _version(n: int) -> str:
    # ~60 sentences: several chunks, so a torn write shows as a count that does not match.
    sentence = f"Version {n} of the zeta handbook says the zeta valve must be turned {n} times clockwise. "
    return " ".join(f"Section {i}. {sentence}" for i in range(60))


def _store(client: TestClient) -> ChromaStore:
    return client.app.state.registry.get("local").service.store  # type: ignore[attr-defined,no-any-return]


def _assert_whole_or_gone(client: TestClient | httpx.Client, store: ChromaStore, doc_id: str) -> bool:
    """The invariant for one document; returns whether it is listed."""
    listed = {d["doc_id"]: d for d in client.get("/documents").json()["documents"]}
    record = store.get_document(doc_id, with_text=False)
    chunk_ids = store.chunk_ids_of(doc_id)
    if doc_id not in listed:
        assert client.get(f"/documents/{doc_id}").status_code == 404
        assert chunk_ids == [], f"unlisted {doc_id} still has {len(chunk_ids)} chunks"
        return False
    assert record is not None
    assert len(chunk_ids) == listed[doc_id]["chunks"] > 0, (
        f"listed {doc_id} says chunks={listed[doc_id]['chunks']} but the store holds {len(chunk_ids)}"
    )
    return True


class _Pausing:
    """Wraps a Chroma collection: the first call of ``method`` (once ``armed`` is set) waits for ``proceed``."""

    def __init__(
        self, inner: Any, method: str, armed: threading.Event, reached: threading.Event, proceed: threading.Event
    ) -> None:
        self.inner, self.method, self.armed, self.reached, self.proceed = inner, method, armed, reached, proceed

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method or not self.armed.is_set() or self.reached.is_set():
            return attr

        def paused(*args: Any, **kwargs: Any) -> Any:
            self.reached.set()
            assert self.proceed.wait(60)
            return attr(*args, **kwargs)

        return paused


@pytest.fixture(params=[1, 2], ids=["one-replica", "two-replicas"])
def clients(request: pytest.FixtureRequest, tmp_path: Path, embedder) -> Iterator[tuple[TestClient, TestClient]]:  # type: ignore[no-untyped-def]
    """(writer, deleter): one app, or two apps over the same store that share nothing in memory (replicas)."""
    settings = make_settings(tmp_path / "data")
    with ExitStack() as stack:
        one = stack.enter_context(TestClient(create_app(settings, embedder=embedder)))
        two = stack.enter_context(TestClient(create_app(settings, embedder=embedder))) if request.param == 2 else one
        yield one, two


def test_delete_during_upload_waits_then_removes_the_document_completely(
    clients: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freeze an upload after its new chunks are written, before its record: a DELETE now must not interleave."""
    writer, deleter = clients
    assert writer.post("/documents", json={"doc_id": "zeta", "text": _version(1)}).status_code == 201
    armed, reached, proceed = threading.Event(), threading.Event(), threading.Event()
    armed.set()
    real_docs = ChromaStore._docs
    monkeypatch.setattr(
        ChromaStore,
        "_docs",
        property(lambda self: _Pausing(real_docs.fget(self), "upsert", armed, reached, proceed)),  # type: ignore[attr-defined]
    )
    results: dict[str, httpx.Response] = {}
    upload = threading.Thread(
        target=lambda: results.setdefault(
            "upload", writer.post("/documents", json={"doc_id": "zeta", "text": _version(2)})
        )
    )
    delete = threading.Thread(target=lambda: results.setdefault("delete", deleter.delete("/documents/zeta")))
    upload.start()
    try:
        assert reached.wait(60), "the upload never reached its record write"
        delete.start()
        delete.join(timeout=1.0)
        delete_finished_mid_upload = not delete.is_alive()
    finally:
        proceed.set()
        upload.join(timeout=60)
        if delete.ident is not None:
            delete.join(timeout=60)
    assert results["upload"].status_code == 200 and results["upload"].json()["status"] == "updated"
    assert results["delete"].status_code == 204
    assert not _assert_whole_or_gone(writer, _store(writer), "zeta"), (
        "the delete came second: the document must be gone"
    )
    assert not delete_finished_mid_upload, "the delete ran while the upload was between its chunks and its record"

    again = writer.post("/documents", json={"doc_id": "zeta", "text": _version(2)})
    assert again.status_code == 201 and again.json()["status"] == "added"
    assert _assert_whole_or_gone(writer, _store(writer), "zeta")


def test_upload_during_delete_waits_then_stores_the_document_completely(
    clients: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freeze a delete after it removed the record, before it reads the chunks to delete: an upload arrives."""
    writer, deleter = clients
    assert writer.post("/documents", json={"doc_id": "zeta", "text": _version(1)}).status_code == 201
    armed, reached, proceed = threading.Event(), threading.Event(), threading.Event()
    real_docs, real_chunks = ChromaStore._docs, ChromaStore._chunks

    class ArmingDocs:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def delete(self, **kwargs: Any) -> Any:
            out = self.inner.delete(**kwargs)
            armed.set()  # the record is gone: the delete's next chunk read pauses
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    monkeypatch.setattr(ChromaStore, "_docs", property(lambda self: ArmingDocs(real_docs.fget(self))))  # type: ignore[attr-defined]
    monkeypatch.setattr(
        ChromaStore,
        "_chunks",
        property(lambda self: _Pausing(real_chunks.fget(self), "get", armed, reached, proceed)),  # type: ignore[attr-defined]
    )
    results: dict[str, httpx.Response] = {}
    delete = threading.Thread(target=lambda: results.setdefault("delete", deleter.delete("/documents/zeta")))
    upload = threading.Thread(
        target=lambda: results.setdefault(
            "upload", writer.post("/documents", json={"doc_id": "zeta", "text": _version(2)})
        )
    )
    delete.start()
    try:
        assert reached.wait(60), "the delete never got past its record"
        upload.start()
        upload.join(timeout=1.0)
        upload_finished_mid_delete = not upload.is_alive()
    finally:
        proceed.set()
        delete.join(timeout=60)
        if upload.ident is not None:
            upload.join(timeout=60)
    assert results["delete"].status_code == 204
    assert results["upload"].status_code == 201 and results["upload"].json()["status"] == "added"
    assert _assert_whole_or_gone(writer, _store(writer), "zeta"), (
        "the upload came second: the document must be there, whole"
    )
    assert not upload_finished_mid_delete, "the upload ran while the delete was between its record and its chunks"
    body = writer.post("/ask", json={"question": QUESTION, "top_k": 50}).json()
    assert {p["doc_id"] for p in body["passages"]} == {"zeta"}
    assert {p["text"].split("Version ")[1].split(" ")[0] for p in body["passages"]} == {"2"}


def test_same_content_with_missing_chunks_is_reindexed_not_unchanged(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """'unchanged' means the chunks are there: a record whose chunks were lost (the old race) is re-indexed."""
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        first = client.post("/documents", json={"doc_id": "zeta", "text": _version(3)}).json()
        assert first["chunks"] > 2
        store = _store(client)
        store.delete_chunks(store.chunk_ids_of("zeta")[1:])  # the broken state the race used to leave
        again = client.post("/documents", json={"doc_id": "zeta", "text": _version(3)})
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "updated" and again.json()["chunks"] == first["chunks"]
        assert _assert_whole_or_gone(client, _store(client), "zeta")
        assert client.post("/documents", json={"doc_id": "zeta", "text": _version(3)}).json()["status"] == "unchanged"
        body = client.post("/ask", json={"question": QUESTION, "top_k": 50}).json()
        assert len(body["passages"]) == first["chunks"]


def test_deletes_every_10ms_during_uploads_over_http_never_break_a_document(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """The report's reproduction, with real timing: a real server, one client uploading, one deleting every 10 ms."""
    settings = make_settings(tmp_path / "data")
    app = create_app(settings, embedder=embedder)
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as http:
        store = app.state.registry.get("local").service.store
        for round_ in range(4):
            assert http.post("/documents", json={"doc_id": "zeta", "text": _version(round_)}, timeout=60).is_success
            stop = threading.Event()
            statuses: list[int] = []

            def delete_repeatedly(stop: threading.Event, statuses: list[int]) -> None:
                with httpx.Client(base_url=server.url) as other:
                    while not stop.is_set():
                        statuses.append(other.delete("/documents/zeta", timeout=60).status_code)
                        stop.wait(0.01)

            deleter = threading.Thread(target=delete_repeatedly, args=(stop, statuses))
            deleter.start()
            try:
                upload = http.post("/documents", json={"doc_id": "zeta", "text": _version(round_ + 10)}, timeout=60)
            finally:
                stop.set()
                deleter.join(timeout=60)
            assert upload.status_code in (200, 201), upload.text
            assert set(statuses) <= {204, 404} and 204 in statuses, statuses
            listed = _assert_whole_or_gone(http, store, "zeta")
            if listed:
                body = http.post("/ask", json={"question": QUESTION, "top_k": 50}, timeout=60).json()
                assert body["passages"] and {p["doc_id"] for p in body["passages"]} == {"zeta"}
            http.delete("/documents/zeta")
