"""Documents over HTTP: add (JSON or upload), replace, delete; idempotent by content hash; limits and types."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import make_settings
from tests.index.test_pipeline import _pdf_bytes

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
ALPHA_V2 = "Alpha reactors were abandoned in 1975. Nobody remembers why they stopped."


@pytest.fixture
def client(tmp_path: Path, embedder) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", max_body_bytes=64 * 1024)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


def test_add_document_json_then_answer_cites_it(client: TestClient) -> None:
    response = client.post("/documents", json={"doc_id": "alpha", "text": ALPHA, "source": "notes/alpha.txt"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "added" and body["doc_id"] == "alpha" and body["chunks"] == 1
    answer = client.post("/ask", json={"question": "When were alpha reactors first tested?"}).json()
    assert answer["no_answer"] is False
    text = client.get("/documents/alpha").json()["text"]
    assert answer["citations"] and all(c["doc_id"] == "alpha" for c in answer["citations"])
    for citation in answer["citations"]:
        assert text[citation["start"] : citation["end"]] == citation["quote"]
        assert citation["source"] == "notes/alpha.txt"


def test_add_document_same_content_is_unchanged_and_new_content_replaces(client: TestClient) -> None:
    first = client.post("/documents", json={"doc_id": "alpha", "text": ALPHA}).json()
    again = client.post("/documents", json={"doc_id": "alpha", "text": "  " + ALPHA + "\n"})
    assert again.status_code == 200
    assert again.json()["status"] == "unchanged" and again.json()["content_hash"] == first["content_hash"]
    updated = client.post("/documents", json={"doc_id": "alpha", "text": ALPHA_V2})
    assert updated.status_code == 200 and updated.json()["status"] == "updated"
    listing = client.get("/documents").json()["documents"]
    assert [(d["doc_id"], d["content_hash"]) for d in listing] == [("alpha", updated.json()["content_hash"])]
    answer = client.post("/ask", json={"question": "What powers alpha reactors, molten salt?", "top_k": 10}).json()
    assert all("molten salt" not in p["text"] for p in answer["passages"]), "a stale chunk is still retrievable"


def test_add_document_without_id_uses_source_then_hash(client: TestClient) -> None:
    by_source = client.post("/documents", json={"text": ALPHA, "source": "a.txt"}).json()
    assert by_source["doc_id"] == "a.txt"
    by_hash = client.post("/documents", json={"text": ALPHA_V2}).json()
    assert by_hash["doc_id"] == by_hash["content_hash"][:16]


def test_upload_file_markdown_and_pdf(client: TestClient) -> None:
    md = client.post("/documents", files={"file": ("guide.md", b"# Guide\n\nBeta gardens grow purple tomatoes.")})
    assert md.status_code == 201, md.text
    assert md.json()["doc_id"] == "guide.md" and md.json()["source"] == "guide.md"
    pdf = client.post(
        "/documents",
        files={"file": ("paper.pdf", _pdf_bytes("Gamma rays were discovered by Paul Villard in 1900."))},
        data={"doc_id": "papers/gamma"},
    )
    assert pdf.status_code == 201, pdf.text
    assert "Paul Villard" in client.get("/documents/papers/gamma").json()["text"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": {"file": ("tool.exe", b"MZ\x00\x00")}}, 415, "unsupported_media_type"),
        ({"files": {"file": ("noext", b"hello there")}}, 415, "unsupported_media_type"),
        ({"content": b"just text", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"content": b"", "headers": {}}, 415, "unsupported_media_type"),
        ({"files": {"file": ("bin.txt", b"\x00\x01binary")}}, 422, "invalid_input"),
        ({"files": {"file": ("latin.txt", "caf\xe9".encode("latin-1"))}}, 422, "invalid_input"),
        ({"data": {"doc_id": "x"}, "files": {"other": ("a.txt", b"hi")}}, 422, "invalid_input"),
        ({"json": {"text": "   \n "}}, 422, "invalid_input"),
        ({"json": {"text": ALPHA, "doc_id": " padded "}}, 422, "invalid_input"),
        ({"json": {"text": ALPHA, "doc_id": "bad\x00id"}}, 422, "invalid_input"),
        ({"json": {"doc_id": "x"}}, 422, "invalid_input"),
        ({"json": ["text"]}, 422, "invalid_input"),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 422, "invalid_input"),
        ({"json": {"text": "x" * (70 * 1024)}}, 413, "payload_too_large"),
        ({"files": {"file": ("big.txt", b"word " * (20 * 1024))}}, 413, "payload_too_large"),
    ],
)
def test_add_document_bad_input_gets_one_error_model(client: TestClient, kwargs: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    response = client.post("/documents", **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail["code"] == code and detail["message"]
    assert client.get("/documents").json()["documents"] == [], "bad input must not reach the store"


def test_oversized_body_refused_by_content_length_before_reading(client: TestClient) -> None:
    response = client.post(
        "/ask", content=b"{" + b" " * (65 * 1024) + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"]["code"] == "payload_too_large"


def test_delete_document_removes_it_everywhere(client: TestClient) -> None:
    client.post("/documents", json={"doc_id": "alpha", "text": ALPHA})
    client.post("/documents", json={"doc_id": "beta", "text": "Beta gardens grow purple tomatoes in September."})
    assert client.delete("/documents/alpha").status_code == 204
    assert client.get("/documents/alpha").status_code == 404
    assert [d["doc_id"] for d in client.get("/documents").json()["documents"]] == ["beta"]
    answer = client.post("/ask", json={"question": "molten salt reactors Oak Ridge", "top_k": 10}).json()
    assert {p["doc_id"] for p in answer["passages"]} == {"beta"}
    again = client.delete("/documents/alpha")
    assert again.status_code == 404 and again.json()["detail"]["code"] == "document_not_found"


def _version(n: int) -> str:
    # Many chunks per version, so a torn replacement would show up as a mix within one answer.
    sentence = f"Version {n} of the zeta handbook says the zeta valve must be turned {n} times clockwise. "
    return " ".join(f"Section {i}. {sentence}" for i in range(60))


def test_replace_document_no_query_sees_a_mix_of_versions(client: TestClient) -> None:
    client.post("/documents", json={"doc_id": "zeta", "text": _version(0)})
    stop = threading.Event()
    mixes: list[set[str]] = []
    answers = 0

    def ask_repeatedly() -> None:
        nonlocal answers
        while not stop.is_set():
            body = client.post("/ask", json={"question": "how many times must the zeta valve be turned?", "top_k": 20})
            assert body.status_code == 200, body.text
            versions = {p["text"].split("Version ")[1].split(" ")[0] for p in body.json()["passages"]}
            answers += 1
            if len(versions) > 1:
                mixes.append(versions)

    reader = threading.Thread(target=ask_repeatedly)
    reader.start()
    try:
        for n in range(1, 4):
            assert client.post("/documents", json={"doc_id": "zeta", "text": _version(n)}).json()["status"] == "updated"
    finally:
        stop.set()
        reader.join(timeout=120)
    assert answers > 0
    assert not mixes, mixes
    final = client.post("/ask", json={"question": "zeta valve turned clockwise", "top_k": 50}).json()
    assert {p["text"].split("Version ")[1].split(" ")[0] for p in final["passages"]} == {"3"}


def test_replace_document_mid_write_state_shows_only_the_old_version(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freeze a replacement after its new chunks are written but before its record switches: a query then."""
    from rag.store import ChromaStore

    client.post("/documents", json={"doc_id": "zeta", "text": _version(1)})
    reached, proceed = threading.Event(), threading.Event()
    real_docs = ChromaStore._docs

    class PausingDocs:
        def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
            self.inner = inner

        def upsert(self, **kwargs):  # type: ignore[no-untyped-def]
            reached.set()
            assert proceed.wait(60)
            return self.inner.upsert(**kwargs)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.inner, name)

    monkeypatch.setattr(ChromaStore, "_docs", property(lambda self: PausingDocs(real_docs.fget(self))))  # type: ignore[attr-defined]
    writer = threading.Thread(target=lambda: client.post("/documents", json={"doc_id": "zeta", "text": _version(2)}))
    writer.start()
    try:
        assert reached.wait(60)
        body = client.post("/ask", json={"question": "how many times must the zeta valve be turned?", "top_k": 20})
        versions = {p["text"].split("Version ")[1].split(" ")[0] for p in body.json()["passages"]}
    finally:
        proceed.set()
        writer.join(timeout=60)
    assert versions == {"1"}, "the new chunks showed before the record switched"
    final = client.post("/ask", json={"question": "zeta valve turned clockwise", "top_k": 50}).json()
    assert {p["text"].split("Version ")[1].split(" ")[0] for p in final["passages"]} == {"2"}
