"""The Chroma server (`chroma run`) as the shared store: replicas agree, and an outage is a 503 that heals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import ROOT, ChromaServer, free_port, make_settings
from tests.processes import wait_until_ok

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
QUESTION = "When were alpha reactors first tested?"


def test_store_outage_returns_503_and_recovers_by_itself(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    server = ChromaServer(tmp_path / "chroma").start()
    try:
        settings = make_settings(tmp_path / "data", chroma_url=server.url)
        with TestClient(create_app(settings, embedder=embedder)) as client:
            assert client.post("/documents", json={"doc_id": "alpha", "text": ALPHA}).status_code == 201
            before = client.post("/ask", json={"question": QUESTION}).json()
            assert before["no_answer"] is False

            server.stop()
            for method, path, body in (
                ("POST", "/ask", {"question": QUESTION}),
                ("GET", "/documents", None),
                ("GET", "/documents/alpha", None),
                ("POST", "/documents", {"doc_id": "beta", "text": "Beta gardens grow purple tomatoes."}),
                ("DELETE", "/documents/alpha", None),
            ):
                response = client.request(method, path, json=body)
                assert response.status_code == 503, (method, path, response.text)
                detail = response.json()["detail"]
                assert detail["code"] == "store_unavailable" and "unreachable" in detail["message"]
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["store_available"] is False

            server.start()  # same port, same data
            after = client.post("/ask", json={"question": QUESTION})
            assert after.status_code == 200, after.text
            assert [c["quote"] for c in after.json()["citations"]] == [c["quote"] for c in before["citations"]]
            assert client.get("/ready").status_code == 200
            assert [d["doc_id"] for d in client.get("/documents").json()["documents"]] == ["alpha"]
    finally:
        server.stop()


def test_app_starts_while_the_store_is_down_and_serves_once_it_is_up(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    server = ChromaServer(tmp_path / "chroma")
    settings = make_settings(tmp_path / "data", chroma_url=server.url)
    try:
        with TestClient(create_app(settings, embedder=embedder)) as client:
            assert client.get("/documents").status_code == 503
            server.start()
            assert client.post("/documents", json={"doc_id": "alpha", "text": ALPHA}).status_code == 201
            assert client.post("/ask", json={"question": QUESTION}).json()["no_answer"] is False
    finally:
        server.stop()


class ApiProcess:
    """`python -m api.cli serve` in its own process (a replica), on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1", **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        if wait_until_ok(self.process, f"{self.url}/health", timeout=timeout):
            return
        raise RuntimeError("replica did not start in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def replicas(tmp_path: Path, chroma_url: str) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    env = {
        "RAG_CHROMA_URL": chroma_url,
        "RAG_COLLECTION": f"replicas{os.getpid()}{int(time.time() * 1000) % 10**8}",
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_DEVICE": "cpu",
    }
    one = ApiProcess(env, tmp_path / "one.log")
    two = ApiProcess(env, tmp_path / "two.log")
    try:
        one.wait_ready()
        two.wait_ready()
        yield one, two
    finally:
        one.stop()
        two.stop()


@pytest.mark.slow
def test_two_replicas_on_one_chroma_server_serve_the_same_index(replicas: tuple[ApiProcess, ApiProcess]) -> None:
    one, two = replicas
    # Warm both BM25 sides on an index that does not yet hold the document.
    httpx.post(f"{one.url}/documents", json={"doc_id": "beta", "text": "Beta gardens grow purple tomatoes."})
    for replica in (one, two):
        assert httpx.post(f"{replica.url}/ask", json={"question": "purple tomatoes"}, timeout=60).status_code == 200

    added = httpx.post(f"{one.url}/documents", json={"doc_id": "alpha", "text": ALPHA}, timeout=60)
    assert added.status_code == 201
    body = httpx.post(f"{two.url}/ask", json={"question": QUESTION}, timeout=60).json()
    assert body["no_answer"] is False and body["citations"][0]["doc_id"] == "alpha"
    alpha = [p for p in body["passages"] if p["doc_id"] == "alpha"]
    assert alpha and alpha[0]["bm25_score"] is not None, "the BM25 side of replica two missed the new document"

    updated = httpx.post(
        f"{two.url}/documents", json={"doc_id": "alpha", "text": "Alpha reactors were first tested in 1971."}
    )
    assert updated.json()["status"] == "updated"
    body = httpx.post(f"{one.url}/ask", json={"question": QUESTION, "top_k": 10}, timeout=60).json()
    assert "1971" in body["answer"] and all("molten" not in p["text"] for p in body["passages"])

    assert httpx.delete(f"{one.url}/documents/alpha").status_code == 204
    assert httpx.get(f"{two.url}/documents/alpha").status_code == 404
    body = httpx.post(f"{two.url}/ask", json={"question": QUESTION, "top_k": 10}, timeout=60).json()
    assert {p["doc_id"] for p in body["passages"]} == {"beta"}


# The bound README states ("Growth"): a document one replica has indexed is answered by every other replica,
# BM25 included, within RAG_LEXICAL_POLL_S plus one catch-up, even with no question to trigger it.
STALENESS_S = 2.0


def _until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_idle_replica_answers_a_new_document_within_the_staleness_bound(tmp_path: Path, chroma_url: str) -> None:
    """Replica two never waits for a catch-up (RAG_LEXICAL_WAIT_S=0): only its refresher, reading the change log
    every 0.5 s, can bring the document written through replica one into its BM25 index."""
    env = {
        "RAG_CHROMA_URL": chroma_url,
        "RAG_COLLECTION": f"stale{os.getpid()}{int(time.time() * 1000) % 10**8}",
        "RAG_DEVICE": "cpu",
        "RAG_LEXICAL_POLL_S": "0.5",
        "RAG_LEXICAL_WAIT_S": "0",
    }
    one = ApiProcess({**env, "RAG_DATA_DIR": str(tmp_path / "one")}, tmp_path / "one.log")
    two = ApiProcess({**env, "RAG_DATA_DIR": str(tmp_path / "two")}, tmp_path / "two.log")
    try:
        one.wait_ready()
        two.wait_ready()
        assert httpx.post(
            f"{one.url}/documents", json={"doc_id": "beta", "text": "Beta gardens grow tomatoes."}
        ).is_success
        wait_until_ok(two.process, f"{two.url}/ready", timeout=60)
        _until(lambda: httpx.post(f"{two.url}/ask", json={"question": "tomatoes"}, timeout=60).status_code == 200)
        delays = []
        for round_ in range(3):
            doc_id = f"zorblax{round_}"
            text = f"The zorblaxian{round_} reactor was first tested in {1960 + round_} at Oak Ridge."
            written = httpx.post(f"{one.url}/documents", json={"doc_id": doc_id, "text": text}, timeout=60)
            assert written.status_code == 201
            t0 = time.monotonic()
            while True:
                body = httpx.post(f"{two.url}/ask", json={"question": f"zorblaxian{round_} reactor"}, timeout=60)
                found = [p for p in body.json()["passages"] if p["doc_id"] == doc_id and p["bm25_score"]]
                if found:
                    delays.append(time.monotonic() - t0)
                    break
                assert time.monotonic() - t0 < 30, "replica two never saw the document"
                time.sleep(0.05)
        assert max(delays) <= STALENESS_S, delays
        assert (tmp_path / "two.log").read_text().count("BM25 index built from the collection") == 1
    finally:
        one.stop()
        two.stop()
