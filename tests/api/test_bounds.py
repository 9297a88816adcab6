"""Against a real `rag serve` process: a refused request leaves its keep-alive connection usable, and a client gone
mid-body is not a server error."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CHROMA_URL
from tests.processes import RagServe


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RagServe]:
    base = tmp_path_factory.mktemp("bounds")
    env = {"RAG_DATA_DIR": str(base / "data"), "RAG_DEVICE": "cpu", "RAG_LOG_FORMAT": "text"}
    if CHROMA_URL:
        env |= {"RAG_CHROMA_URL": CHROMA_URL, "RAG_COLLECTION": f"bounds{os.getpid()}{time.time_ns() % 10**8}"}
    with RagServe(env, base / "serve.log") as server:
        yield server


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
