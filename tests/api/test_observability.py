"""/metrics in Prometheus format, request ids in a header and in JSON log lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.logs import JsonFormatter, RequestIdFilter
from tests.conftest import make_settings

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_ingestion_and_answers(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(make_settings(tmp_path / "data"), embedder=embedder)) as client:
        client.post("/documents", json={"doc_id": "alpha", "text": ALPHA})
        client.post("/documents", json={"doc_id": "alpha", "text": ALPHA})
        client.post("/ask", json={"question": "When were alpha reactors first tested?"})
        client.post("/ask", json={"question": "What is the capital of Mongolia's favourite cheese?"})
        client.get("/documents/missing")
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    s = _samples(response.text)
    assert s[("rag_http_requests_total", (("method", "POST"), ("route", "/ask"), ("status", "200")))] == 2
    assert (
        s[("rag_http_requests_total", (("method", "GET"), ("route", "/documents/{doc_id:path}"), ("status", "404")))]
        == 1
    )
    assert s[("rag_http_request_duration_seconds_count", (("method", "POST"), ("route", "/ask")))] == 2
    assert s[("rag_documents_ingested_total", (("result", "added"), ("tenant", "local")))] == 1
    assert s[("rag_documents_ingested_total", (("result", "unchanged"), ("tenant", "local")))] == 1
    assert s[("rag_chunks_ingested_total", (("tenant", "local"),))] == 1
    assert s[("rag_answers_total", (("tenant", "local"),))] == 2
    assert s[("rag_no_answers_total", (("tenant", "local"),))] == 1
    assert s[("rag_answer_citations_count", (("tenant", "local"),))] == 2
    assert s[("rag_answer_citations_sum", (("tenant", "local"),))] >= 1


def test_request_id_is_returned_and_a_valid_one_is_kept(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(make_settings(tmp_path / "data"), embedder=embedder)) as client:
        generated = client.get("/health").headers["x-request-id"]
        assert len(generated) == 32
        assert client.get("/health").headers["x-request-id"] != generated
        assert client.get("/health", headers={"X-Request-ID": "trace-42.a_b"}).headers["x-request-id"] == "trace-42.a_b"
        odd = client.get("/health", headers={"X-Request-ID": "no spaces {or} braces"}).headers["x-request-id"]
        assert odd != "no spaces {or} braces" and len(odd) == 32
        assert client.get("/nowhere").headers["x-request-id"]


def test_access_log_is_json_with_request_id(
    tmp_path: Path,
    embedder,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.INFO, logger="api.access")
    with TestClient(create_app(make_settings(tmp_path / "data"), embedder=embedder)) as client:
        rid = client.get("/documents", headers={"X-Request-ID": "req-123"}).headers["x-request-id"]
    assert rid == "req-123"
    record = next(r for r in caplog.records if r.name == "api.access" and "/documents" in r.getMessage())
    assert RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-123"
    assert line["event"] == "request" and line["route"] == "/documents" and line["status"] == 200
    assert line["tenant"] == "local" and line["level"] == "info" and isinstance(line["ms"], float)
