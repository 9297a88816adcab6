"""A hung Chroma server (`chroma run` stopped by SIGSTOP) costs a request RAG_CHROMA_TIMEOUT_S, never more.

A real `chroma run` and a real `rag serve` process. /ask, /ready and the document routes answer 503
``store_unavailable`` within the timeout while the server is stopped, /health stays 200, a burst of requests larger
than the worker pool does not pin it, and after SIGCONT everything answers again. A write interrupted half-way (the
server stopped before it received one of the write's requests, or after it committed it but before it answered) is
repaired by the next call once the server answers again: the document is then the old version whole, the new version
whole (if its record had switched, the write's commit point) or absent, and BM25 agrees with the store.

To stop the server at one exact request of a write, rag serve talks to Chroma through a transparent TCP relay that
sends SIGSTOP to the real server when it sees that request (or that request's answer); the hang itself is real.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.api.test_chroma_server import ApiProcess
from tests.conftest import ChromaServer, free_port

TIMEOUT_S = 1.0
# Beyond the timeout, what a request may take on this shared 2-core machine (one store call fails, then the 503).
MARGIN_S = 2.0
COLLECTION = "hang"
ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
QUESTION = "When were alpha reactors first tested?"
_WRITE = re.compile(rb"(?:POST|PUT) /api/v2/tenants/[^ ]+/collections/[^/ ]+/(upsert|delete) HTTP/1\.1\r\n")


class FreezeRelay:
    """A TCP relay in front of a real Chroma server that can stop it (SIGSTOP) at the n-th upsert or delete.

    ``hold="request"``: the server is stopped before that request reaches it (the request waits in its socket).
    ``hold="response"``: the request is served, then the server is stopped and its answer is never relayed (the write
    is committed, the client never learns it). Either way the client sees a server that does not answer.
    """

    def __init__(self, server: ChromaServer) -> None:
        self.server = server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._armed: tuple[bytes, int, str] | None = None
        self._seen = 0
        self.fired_at: float | None = None
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, kind: str, nth: int, hold: str) -> None:
        with self._lock:
            self._armed, self._seen, self.fired_at = (kind.encode(), nth, hold), 0, None

    def stop_server(self) -> None:
        assert self.server.process is not None
        os.killpg(self.server.process.pid, signal.SIGSTOP)

    def resume_server(self) -> None:
        if self.server.process is not None and self.server.process.poll() is None:
            os.killpg(self.server.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self._listener.close()
        for s in self._sockets:
            s.close()

    def _fire(self) -> None:
        self.stop_server()
        self.fired_at = time.monotonic()
        self._armed = None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.server.port))
            self._sockets += [client, upstream]
            held = threading.Event()  # this connection's next answer is to be swallowed
            threading.Thread(target=self._pump, args=(client, upstream, held, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, held, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, held: threading.Event, to_server: bool) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    if to_server and self._armed is not None:
                        match = _WRITE.search(data)
                        if match and match.group(1) == self._armed[0]:
                            self._seen += 1
                            if self._seen == self._armed[1]:
                                if self._armed[2] == "request":
                                    self._fire()
                                else:
                                    held.set()
                    if not to_server and held.is_set():
                        if self.fired_at is None:
                            self._fire()
                        continue  # the answer of a committed write, never relayed
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


@dataclass
class Stack:
    server: ChromaServer
    relay: FreezeRelay
    api: ApiProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("hang")
    server = ChromaServer(base / "chroma").start()
    relay = FreezeRelay(server)
    api = ApiProcess(
        {
            "RAG_CHROMA_URL": relay.url,
            "RAG_CHROMA_TIMEOUT_S": str(TIMEOUT_S),
            "RAG_COLLECTION": COLLECTION,
            "RAG_DATA_DIR": str(base / "data"),
            "RAG_DEVICE": "cpu",
        },
        base / "api.log",
    )
    try:
        api.wait_ready()
        yield Stack(server, relay, api)
    finally:
        relay.resume_server()
        api.stop()
        relay.close()
        server.stop()


def _timed(method: str, url: str, **kwargs: object) -> tuple[httpx.Response | None, float]:
    """The response (None if none came within the timeout plus the margin) and the seconds it took."""
    started = time.monotonic()
    try:
        response = httpx.request(method, url, timeout=TIMEOUT_S + MARGIN_S, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        response = None
    return response, time.monotonic() - started


def _assert_store_unavailable(response: httpx.Response | None, seconds: float, what: str) -> None:
    assert response is not None, f"{what}: no answer within {TIMEOUT_S + MARGIN_S:.1f} s while Chroma was stopped"
    assert response.status_code == 503, (what, response.status_code, response.text)
    assert response.json()["detail"]["code"] == "store_unavailable", (what, response.text)
    assert seconds < TIMEOUT_S + MARGIN_S, (what, seconds)


def test_hung_chroma_server_answers_503_within_the_timeout_and_recovers(stack: Stack) -> None:
    url = stack.api.url
    assert httpx.post(f"{url}/documents", json={"doc_id": "alpha", "text": ALPHA}, timeout=60).status_code in (200, 201)
    before = httpx.post(f"{url}/ask", json={"question": QUESTION}, timeout=60).json()
    assert before["no_answer"] is False

    stack.relay.stop_server()
    try:
        for method, path, body in (
            ("POST", "/ask", {"question": QUESTION}),
            ("GET", "/documents", None),
            ("POST", "/documents", {"doc_id": "beta", "text": "Beta gardens grow purple tomatoes."}),
            ("DELETE", "/documents/alpha", None),
        ):
            response, seconds = _timed(method, f"{url}{path}", json=body)
            _assert_store_unavailable(response, seconds, f"{method} {path}")
        ready, seconds = _timed("GET", f"{url}/ready")
        assert ready is not None and seconds < TIMEOUT_S + MARGIN_S, f"/ready took over {seconds:.1f} s"
        assert ready.status_code == 503 and ready.json()["store_available"] is False, ready.text
        assert "did not answer" in ready.json()["reason"], ready.text
        health, seconds = _timed("GET", f"{url}/health")
        assert health is not None and health.status_code == 200 and seconds < 1.0

        # More requests at once than the server has worker threads (40): none pins one for good.
        with ThreadPoolExecutor(48) as pool:
            started = time.monotonic()
            burst = list(pool.map(lambda _: _timed("POST", f"{url}/ask", json={"question": QUESTION}), range(48)))
        assert all(r is not None and r.status_code == 503 for r, _ in burst), [r and r.status_code for r, _ in burst]
        assert time.monotonic() - started < 2 * TIMEOUT_S + MARGIN_S + 2.0
    finally:
        stack.relay.resume_server()

    # Neither the upload nor the delete that got 503 (both failed before sending a change) happens later.
    after = httpx.post(f"{url}/ask", json={"question": QUESTION}, timeout=60)
    assert after.status_code == 200, after.text
    assert [c["quote"] for c in after.json()["citations"]] == [c["quote"] for c in before["citations"]]
    assert httpx.get(f"{url}/ready", timeout=60).status_code == 200
    listed = {d["doc_id"] for d in httpx.get(f"{url}/documents", timeout=60).json()["documents"]}
    assert "beta" not in listed and "alpha" in listed
    assert _store_state(stack.server, "beta") == (None, {})


def _store_state(server: ChromaServer, doc_id: str) -> tuple[tuple[str, int] | None, dict[str, int]]:
    """Straight from the Chroma server (its REST API): the document record's (content hash, chunk count), and the
    document's chunks counted by content hash."""
    base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    with httpx.Client(timeout=30) as http:

        def get(collection: str, query: dict[str, object]) -> list[dict[str, object]]:
            ident = http.get(f"{base}/{collection}").raise_for_status().json()["id"]
            got = http.post(f"{base}/{ident}/get", json={**query, "include": ["metadatas"]}).raise_for_status()
            return list(got.json()["metadatas"])

        records = get(f"{COLLECTION}-docs", {"ids": [doc_id]})
        chunks = get(f"{COLLECTION}-chunks", {"where": {"doc_id": doc_id}})
    record = (str(records[0]["content_hash"]), int(str(records[0]["chunks"]))) if records else None
    by_hash: dict[str, int] = {}
    for meta in chunks:
        by_hash[str(meta["content_hash"])] = by_hash.get(str(meta["content_hash"]), 0) + 1
    return record, by_hash


def _version(n: int) -> str:
    """A document of a few chunks, every chunk different from every other version's."""
    return " ".join(
        f"Version {n} of the gamma manual, section {s}: the gamma pump number {n * 100 + s} runs at "
        f"{n * 7 + s} bar and is checked every {s + n} days by the night shift. " * 6
        for s in range(4)
    )


@pytest.mark.parametrize(
    ("route", "kind", "nth", "hold", "outcome"),
    [
        ("POST", "upsert", 1, "request", "old"),  # the new chunks arrive only after SIGCONT, if at all
        ("POST", "upsert", 1, "response", "old"),  # the new chunks land, the record does not switch
        ("POST", "upsert", 2, "response", "new"),  # record switched, the old chunks are not deleted
        ("POST", "delete", 1, "response", "new"),  # old chunks deleted, the generation does not move
        ("DELETE", "delete", 1, "response", "absent"),  # the record is deleted, its chunks are not
    ],
)
def test_write_interrupted_by_a_hung_server_leaves_the_document_whole_or_absent(
    stack: Stack, route: str, kind: str, nth: int, hold: str, outcome: str
) -> None:
    url = stack.api.url
    doc_id = f"gamma-{route}-{kind}{nth}-{hold}"
    first = httpx.post(f"{url}/documents", json={"doc_id": doc_id, "text": _version(1)}, timeout=60)
    assert first.status_code == 201, first.text
    assert first.json()["chunks"] >= 2
    # BM25 built at this version: a write that ends without moving the generation leaves it stale (and visible).
    assert _ask_gamma(url).status_code == 200

    stack.relay.arm(kind, nth, hold)
    try:
        if route == "POST":
            response, _ = _timed("POST", f"{url}/documents", json={"doc_id": doc_id, "text": _version(2)})
        else:
            response, _ = _timed("DELETE", f"{url}/documents/{doc_id}")
        assert stack.relay.fired_at is not None, "the relay never saw the request it was to stop the server at"
        _assert_store_unavailable(response, time.monotonic() - stack.relay.fired_at, f"{route} /documents")
    finally:
        stack.relay.resume_server()

    listed = httpx.get(f"{url}/documents", timeout=60)
    assert listed.status_code == 200, listed.text
    summary = {d["doc_id"]: d for d in listed.json()["documents"]}.get(doc_id)
    record, by_hash = _store_state(stack.server, doc_id)
    mine = [p for p in _ask_gamma(url).json()["passages"] if p["doc_id"] == doc_id]
    if record is None:
        assert summary is None and by_hash == {}, f"absent, yet chunks are left: {by_hash}"
        assert mine == [], "a deleted document is still retrieved"
    else:
        content_hash, chunks = record
        assert summary is not None and summary["content_hash"] == content_hash and summary["chunks"] == chunks
        assert by_hash == {content_hash: chunks}, f"the record says {chunks} chunks of {content_hash}: {by_hash}"
        # Readers see exactly that version, on both sides: every passage lies at its offsets in the stored text.
        text = httpx.get(f"{url}/documents/{doc_id}", timeout=60).json()["text"]
        assert mine and all(text[p["start"] : p["end"]] == p["text"] for p in mine)
        assert any(p["bm25_score"] is not None for p in mine), "BM25 does not know the version in the store"
        assert {p["text"].split("Version ")[1].split(" ")[0] for p in mine} == {"1" if outcome == "old" else "2"}
    # The record is the write's commit point: the repair keeps the version it names, and removes the rest.
    assert ("absent" if record is None else "old" if record[0] == first.json()["content_hash"] else "new") == outcome


def _ask_gamma(url: str) -> httpx.Response:
    return httpx.post(f"{url}/ask", json={"question": "How often is the gamma pump checked?", "top_k": 50}, timeout=60)


def test_retry_after_an_interrupted_write_does_not_wait_for_its_lock(stack: Stack) -> None:
    """The client that got 503 retries at once: the lease its write left in the store (a hung server cannot be told
    to drop it) does not hold the retry up for the lease's 10 s; the retry is repaired around and stored whole."""
    url = stack.api.url
    doc_id = "gamma-retry"
    assert httpx.post(f"{url}/documents", json={"doc_id": doc_id, "text": _version(1)}, timeout=60).status_code == 201
    stack.relay.arm("upsert", 1, "response")  # the new chunks land, then the server hangs, lock still held
    try:
        response, _ = _timed("POST", f"{url}/documents", json={"doc_id": doc_id, "text": _version(2)})
        assert stack.relay.fired_at is not None, "the relay never saw the request it was to stop the server at"
        _assert_store_unavailable(response, time.monotonic() - stack.relay.fired_at, "POST /documents")
    finally:
        stack.relay.resume_server()

    started = time.monotonic()
    retry = httpx.post(f"{url}/documents", json={"doc_id": doc_id, "text": _version(2)}, timeout=60)
    seconds = time.monotonic() - started
    assert retry.status_code == 200 and retry.json()["status"] == "updated", retry.text
    assert seconds < 5.0, f"the retry took {seconds:.1f} s: it waited for the lock its own failed write left"
    record, by_hash = _store_state(stack.server, doc_id)
    assert record == (retry.json()["content_hash"], retry.json()["chunks"])
    assert by_hash == {record[0]: record[1]}, by_hash
