"""Browsers' writes from other origins are refused: a web page cannot plant or delete documents on a keyless service.

Without keys, any page open on the operator's machine could once POST a multipart form to 127.0.0.1 (201). curl,
the openai client and the chat page (same origin) keep working; the page is also driven by tests/api/test_page.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import make_settings

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
EVIL = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


@pytest.fixture
def client(tmp_path: Path, embedder) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", allowed_origins="http://tools.example:8080, https://wiki.example/")
    with TestClient(create_app(settings, embedder=embedder)) as client:  # Host: testserver
        yield client


def _doc_ids(client: TestClient) -> list[str]:
    return [d["doc_id"] for d in client.get("/documents").json()["documents"]]


@pytest.mark.parametrize(
    "headers",
    [
        EVIL,
        {"Origin": "http://evil.example"},  # an older browser: no Sec-Fetch-* headers
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": "http://testserver:3000", "Sec-Fetch-Site": "same-site"},  # another port of the same host
        {"Origin": "http://testserver.evil.example"},
    ],
    ids=["cross-site", "origin-only", "fetch-site-only", "null", "same-site", "lookalike"],
)
def test_cross_origin_form_upload_is_refused_and_plants_nothing(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/documents", headers=headers, files={"file": ("planted.txt", ALPHA.encode(), "text/plain")})
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "cross_origin"
    assert "RAG_ALLOWED_ORIGINS" in detail["message"]
    assert _doc_ids(client) == []


def test_cross_origin_writes_on_every_unsafe_route_are_refused(client: TestClient) -> None:
    assert client.post("/documents", json={"doc_id": "alpha", "text": ALPHA}).status_code == 201
    for method, path, body in (
        ("POST", "/documents", {"doc_id": "planted", "text": "Planted text."}),
        ("DELETE", "/documents/alpha", None),
        ("POST", "/ask", {"question": "When were alpha reactors first tested?"}),
        ("POST", "/chat", {"message": "When were alpha reactors first tested?"}),
        ("DELETE", "/conversations/abc", None),
        ("POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hello"}]}),
    ):
        response = client.request(method, path, headers=EVIL, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "http://evil.example" in response.json()["detail"]["message"]
    assert _doc_ids(client) == ["alpha"]
    # Reads stay open: the browser keeps their answers from the other origin's page (no CORS headers are sent).
    assert client.get("/documents/alpha", headers=EVIL).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the openai client, scripts: no Origin, no Sec-Fetch-Site
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},  # the chat page
        {"Origin": "http://TestServer:80"},  # the same origin, spelled otherwise
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # the user's own action (a bookmark, the address bar)
        {"Origin": "http://tools.example:8080", "Sec-Fetch-Site": "cross-site"},  # listed in RAG_ALLOWED_ORIGINS
        {"Origin": "https://wiki.example", "Sec-Fetch-Site": "cross-site"},
    ],
    ids=[
        "no-browser",
        "same-origin",
        "same-origin-spelled",
        "fetch-site-same",
        "fetch-site-none",
        "allowed",
        "allowed-2",
    ],
)
def test_same_origin_allowed_origins_and_non_browser_clients_can_write(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post("/documents", headers=headers, files={"file": ("alpha.txt", ALPHA.encode(), "text/plain")})
    assert response.status_code == 201, response.text
    assert client.delete("/documents/alpha.txt", headers=headers).status_code == 204


@pytest.mark.parametrize("value", ["tools.example", "http://tools.example/path", "*", "ftp://tools.example"])
def test_bad_allowed_origins_fail_the_settings(tmp_path: Path, value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="RAG_ALLOWED_ORIGINS"):
        make_settings(tmp_path / "data", allowed_origins=value)
