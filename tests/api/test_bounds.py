"""Bounded work per request, against a real `rag serve` process: documents past the caps are refused within seconds
(413, saying which limit and how to raise it), and a refused request leaves its keep-alive connection usable."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import DEFAULT_MAX_DOCUMENT_CHARS
from tests.conftest import CHROMA_URL, make_settings
from tests.index.test_loaders import pdf_bomb
from tests.llm_servers import ScriptedServer
from tests.processes import RagServe

# A bounded request ends in about 1 s on an idle 2-core machine (FAST_S leaves room for one shared with other test
# runs); unbounded, these took minutes, and the client gives up at CLIENT_TIMEOUT_S.
CLIENT_TIMEOUT_S = 20
FAST_S = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RagServe]:
    base = tmp_path_factory.mktemp("bounds")
    env = {"RAG_DATA_DIR": str(base / "data"), "RAG_DEVICE": "cpu", "RAG_LOG_FORMAT": "text"}
    # Each test times one request, stored before its answer: large bodies stay synchronous (not jobs) here.
    env["RAG_SYNC_UPLOAD_BYTES"] = str(64 * 1024 * 1024)
    if CHROMA_URL:
        env |= {"RAG_CHROMA_URL": CHROMA_URL, "RAG_COLLECTION": f"bounds{os.getpid()}{time.time_ns() % 10**8}"}
    with RagServe(env, base / "serve.log") as server:
        yield server


def _too_large(response: httpx.Response, setting: str, limit: str) -> None:
    assert response.status_code == 413, response.text[:500]
    detail = response.json()["detail"]
    assert detail["code"] == "document_too_large", detail
    assert setting in detail["message"] and limit in detail["message"], detail


def test_json_document_of_9_mb_is_refused_at_once(server: RagServe) -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 160_000  # 9.1 MB
    started = time.perf_counter()
    response = httpx.post(f"{server.url}/documents", json={"doc_id": "huge", "text": text}, timeout=CLIENT_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    _too_large(response, "RAG_MAX_DOCUMENT_CHARS", f"{DEFAULT_MAX_DOCUMENT_CHARS:,}")
    assert "9,119,999 characters" in response.json()["detail"]["message"]
    assert elapsed < FAST_S, elapsed
    assert httpx.get(f"{server.url}/documents/huge").status_code == 404


def test_pdf_that_expands_to_40m_characters_is_refused_at_once(server: RagServe) -> None:
    data = pdf_bomb()
    started = time.perf_counter()
    response = httpx.post(
        f"{server.url}/documents", files={"file": ("bomb.pdf", data, "application/pdf")}, timeout=CLIENT_TIMEOUT_S
    )
    elapsed = time.perf_counter() - started
    _too_large(response, "RAG_MAX_DOCUMENT_CHARS", f"{DEFAULT_MAX_DOCUMENT_CHARS:,}")
    assert elapsed < FAST_S, elapsed


def test_html_of_200k_nested_divs_is_read_at_once(server: RagServe) -> None:
    # Every div left open, and more text than the cap (5.1 million characters) in a body under RAG_MAX_BODY_BYTES.
    wide = ("<div>lorem ipsum dolor sit amet, consectetur adipiscing " * 100_000).encode()
    assert len(wide) < 10 * 1024 * 1024 and 51 * 100_000 > DEFAULT_MAX_DOCUMENT_CHARS
    started = time.perf_counter()
    response = httpx.post(
        f"{server.url}/documents", files={"file": ("wide.html", wide, "text/html")}, timeout=CLIENT_TIMEOUT_S
    )
    _too_large(response, "RAG_MAX_DOCUMENT_CHARS", f"{DEFAULT_MAX_DOCUMENT_CHARS:,}")
    assert time.perf_counter() - started < FAST_S
    deep = ("<html><body>" + "<div>" * 200_000 + "Deep divs hold one sentence." + "</div>" * 200_000).encode()
    started = time.perf_counter()
    response = httpx.post(
        f"{server.url}/documents", files={"file": ("deep.html", deep, "text/html")}, timeout=CLIENT_TIMEOUT_S
    )
    assert response.status_code == 201, response.text
    assert time.perf_counter() - started < FAST_S
    assert httpx.get(f"{server.url}/documents/deep.html").json()["text"] == "Deep divs hold one sentence."


def test_malformed_html_is_a_4xx_not_a_500(server: RagServe) -> None:
    response = httpx.post(
        f"{server.url}/documents", files={"file": ("marked.html", b"<![" * 1000, "text/html")}, timeout=10
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["code"] == "invalid_input"


BAD_REQUESTS = [
    ("POST", "/documents", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "who is \\ud800 Alipio?"}]}'),
    ("POST", "/v1/chat/completions", b'{"model": "\\udfff", "messages": [{"role": "user", "content": "Alipio?"}]}'),
    ("POST", "/ask", b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
]


def test_a_bad_request_keeps_the_keep_alive_connection(server: RagServe) -> None:
    # A 500 made uvicorn close the connection (Starlette re-raises after answering), so the client's next request
    # on it failed. Every bad request is a 4xx now, and the connection carries the next request.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=server.url, limits=limits, timeout=30) as client:
        first = client.get("/documents")
        assert first.status_code == 200
        port = _local_port(first)
        for method, path, body in BAD_REQUESTS:
            bad = client.request(method, path, content=body, headers={"content-type": "application/json"})
            assert bad.status_code == 422, (path, bad.text[:300])
            assert set(bad.json()["detail"]) == {"code", "message"}
            assert bad.headers.get("connection", "").lower() != "close", (path, bad.headers)
            after = client.get("/documents")
            assert after.status_code == 200
            assert _local_port(after) == port, f"{path}: the connection was closed after the bad request"
    assert "Traceback" not in server.log_tail(20_000)


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_client_gone_mid_body_stores_nothing_and_logs_no_traceback(server: RagServe) -> None:
    # A client that sends half a body and hangs up: nothing to answer and nothing stored; it is not a server error.
    head = (
        b"POST /documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b'{"doc_id": "half", "text": "' + b"Half a body. " * 500)
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "POST /documents 499" not in server.log_tail(20_000) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = server.log_tail(20_000)
    assert "POST /documents 499" in log, log[-3000:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert httpx.get(f"{server.url}/documents/half").status_code == 404


def test_document_over_the_chunk_cap_is_refused_before_embedding(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", chunk_tokens=32, chunk_overlap=0, max_chunks_per_document=5)
    text = " ".join(f"Sentence number {n} says something about reactors and salt." for n in range(40))
    with TestClient(create_app(settings, embedder=embedder)) as client:
        response = client.post("/documents", json={"doc_id": "many", "text": text})
        _too_large(response, "RAG_MAX_CHUNKS_PER_DOCUMENT", "limit of 5 per document")
        assert client.get("/documents/many").status_code == 404
        small = client.post("/documents", json={"doc_id": "few", "text": "Reactors run on salt."})
        assert small.status_code == 201 and small.json()["chunks"] == 1


ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."


ASKED = "When were alpha reactors first tested?"


def test_answer_whose_client_left_stops_the_model(tmp_path: Path) -> None:
    # A model that writes a word every 0.25 s (15 s in all); the client gives up after 1.5 s. The service stops
    # reading the model within a word or two of that (well under 5 s even on a busy machine), instead of paying for
    # the whole answer nobody will get.
    with ScriptedServer(" ".join(["reactors"] * 60), delay_s=0.25) as model:
        env = {
            "RAG_DATA_DIR": str(tmp_path / "data"),
            "RAG_DEVICE": "cpu",
            "RAG_LOG_FORMAT": "text",
            "RAG_LLM_BASE_URL": model.base_url,
            "RAG_LLM_MODEL": "scripted",
            "RAG_LLM_TIMEOUT_S": "60",
        }
        if CHROMA_URL:
            env |= {"RAG_CHROMA_URL": CHROMA_URL, "RAG_COLLECTION": f"gone{os.getpid()}{time.time_ns() % 10**8}"}
        with RagServe(env, tmp_path / "serve.log") as server:
            added = httpx.post(f"{server.url}/documents", json={"doc_id": "alpha", "text": ALPHA}, timeout=60)
            assert added.status_code == 201, added.text
            for path, body in (
                ("/ask", {"question": ASKED}),
                ("/v1/chat/completions", {"messages": [{"role": "user", "content": ASKED}]}),
            ):
                model.abandoned.clear()
                asked = len(model.requests)
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(f"{server.url}{path}", json=body, timeout=1.5)
                left = time.monotonic()
                while not model.abandoned and time.monotonic() < left + 8:
                    time.sleep(0.1)
                assert len(model.requests) == asked + 1, f"{path}: the model was not asked, nothing to stop"
                assert model.abandoned, f"{path}: the model's reply was not abandoned: {server.log_tail()}"
                assert model.abandoned[0] - left < 5 and not model.finished, path
                deadline = time.monotonic() + 5
                while f"POST {path} 499" not in server.log_tail(20_000) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert f"POST {path} 499" in server.log_tail(20_000)
