"""API keys and tenants: every route but /health needs a key; tenant A never sees tenant B's documents."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import ROOT, LiveServer, make_settings

KEY_A = "key-of-tenant-a-0123456789"
KEY_B = "key-of-tenant-b-9876543210"
KEY_A2 = "second-key-of-a-5555555555"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
SECRET_A = "The acme launch code is pelican-sunrise and it ships on the fifth of May."
SECRET_B = "The globex launch code is walrus-midnight and it ships on the ninth of June."


@pytest.fixture
def client(tmp_path: Path, embedder) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    # Failed keys are not limited here: the next test sends an unknown key to every route (the limit has its own test).
    settings = make_settings(
        tmp_path / "data", api_keys=f"acme:{KEY_A},globex:{KEY_B},acme:{KEY_A2}", auth_failures_per_minute=0
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every operation of the app's own schema (so routers added later are covered too)."""
    schema = client.get("/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "some-id", path))
        for path, operations in schema["paths"].items()
        for method in operations
    ]


def test_every_route_but_health_needs_a_key(client: TestClient) -> None:
    routes = _routes(client)
    assert len(routes) >= 7
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer not-a-key-at-all-000000"}, {"Authorization": f"Basic {KEY_A}"}):
            response = client.request(method, path, headers=headers, json={})
            if path == "/health":
                assert response.status_code == 200
                continue
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["detail"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


def test_tenants_are_isolated_through_every_route(client: TestClient) -> None:
    assert client.post("/documents", headers=A, json={"doc_id": "plan", "text": SECRET_A}).status_code == 201
    assert client.post("/documents", headers=B, json={"doc_id": "other", "text": SECRET_B}).status_code == 201
    # list and get
    assert [d["doc_id"] for d in client.get("/documents", headers=A).json()["documents"]] == ["plan"]
    assert [d["doc_id"] for d in client.get("/documents", headers=B).json()["documents"]] == ["other"]
    assert client.get("/documents/plan", headers=B).status_code == 404
    assert client.get("/documents/other", headers=A).status_code == 404
    # ask and cite: B asking about A's secret gets only B's passages, never A's text
    for headers, own, foreign, foreign_secret in (
        (A, "plan", "walrus", "midnight"),
        (B, "other", "pelican", "sunrise"),
    ):
        body = client.post(
            "/ask", headers=headers, json={"question": f"what is the {foreign} launch code?", "top_k": 50}
        )
        assert body.status_code == 200
        assert {p["doc_id"] for p in body.json()["passages"]} == {own}
        assert {c["doc_id"] for c in body.json()["citations"]} <= {own}
        assert foreign_secret not in body.text
    # the same doc_id in two tenants is two documents
    assert client.post("/documents", headers=B, json={"doc_id": "plan", "text": SECRET_B}).json()["status"] == "added"
    assert "pelican" in client.get("/documents/plan", headers=A).json()["text"]
    # delete: B cannot delete A's document; deleting its own leaves A's alone
    assert client.delete("/documents/other", headers=A).status_code == 404
    assert client.delete("/documents/plan", headers=B).status_code == 204
    assert client.get("/documents/plan", headers=A).status_code == 200
    # ready counts the caller's own index
    assert client.get("/ready", headers=A).json()["documents"] == 1
    assert client.get("/ready", headers=B).json()["documents"] == 1
    # chat, conversations and the OpenAI-compatible endpoint answer from the caller's documents only
    chat = client.post("/chat", headers=A, json={"message": "what is the walrus launch code?", "top_k": 50})
    assert chat.status_code == 200 and {p["doc_id"] for p in chat.json()["passages"]} == {"plan"}
    assert "midnight" not in chat.text
    conversation = chat.json()["conversation_id"]
    assert client.get(f"/conversations/{conversation}", headers=A).status_code == 200
    assert client.get(f"/conversations/{conversation}", headers=B).status_code == 404
    assert client.delete(f"/conversations/{conversation}", headers=B).status_code == 404
    assert client.get(f"/conversations/{conversation}", headers=A).status_code == 200
    completion = client.post(
        "/v1/chat/completions",
        headers=B,
        json={"model": "cited-answers", "messages": [{"role": "user", "content": "what is the pelican launch code?"}]},
    )
    assert completion.status_code == 200, completion.text
    assert "sunrise" not in completion.text
    # a second key of the same tenant sees the same documents
    same = client.get("/documents", headers={"Authorization": f"Bearer {KEY_A2}"}).json()["documents"]
    assert [d["doc_id"] for d in same] == ["plan"]


def test_naming_another_tenant_is_forbidden(client: TestClient) -> None:
    response = client.get("/documents", headers={**A, "X-Tenant": "globex"})
    assert response.status_code == 403 and response.json()["detail"]["code"] == "forbidden"
    assert client.get("/documents", headers={**A, "X-Tenant": "acme"}).status_code == 200


def test_rate_limit_per_key_returns_429_with_retry_after(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", api_keys=f"acme:{KEY_A},globex:{KEY_B}", rate_limit_per_minute=5)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        statuses = [client.get("/documents", headers=A).status_code for _ in range(5)]
        assert statuses == [200] * 5
        # One token comes back every 12 s; on a slow machine one may have refilled already, so allow one more.
        limited = client.get("/documents", headers=A)
        if limited.status_code == 200:
            limited = client.get("/documents", headers=A)
        assert limited.status_code == 429
        assert limited.json()["detail"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 12
        assert client.get("/documents", headers=B).status_code == 200, "another key has its own budget"
        assert client.get("/health").status_code == 200


def test_keys_are_kept_hashed_and_never_logged(
    tmp_path: Path,
    embedder,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(tmp_path / "data", api_keys=f"acme:{KEY_A}")
    assert KEY_A not in repr(settings) and KEY_A not in str(settings.model_dump())
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert KEY_A not in repr(vars(client.app.state.registry.keyring))  # type: ignore[attr-defined]
        client.post("/documents", headers=A, json={"doc_id": "plan", "text": SECRET_A})
        client.post("/ask", headers=A, json={"question": "what is the pelican launch code?"})
        client.get("/documents", headers={"Authorization": "Bearer wrong-key-wrong-key-1234"})
    logged = "\n".join(r.getMessage() + " " + str(getattr(r, "fields", "")) for r in caplog.records)
    assert "POST /documents 201" in logged
    for secret in (KEY_A, "wrong-key-wrong-key", "pelican", "launch code"):
        assert secret not in logged


def _serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_non_loopback_host_without_keys(tmp_path: Path) -> None:
    result = _serve("--host", "0.0.0.0", "--port", "1", env={"RAG_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "without API keys" in result.stderr and "RAG_API_KEYS" in result.stderr


def test_bad_keys_setting_fails_the_start_without_echoing_the_key(tmp_path: Path) -> None:
    result = _serve(env={"RAG_DATA_DIR": str(tmp_path), "RAG_API_KEYS": "acme:tooshort-secret"})
    assert result.returncode == 2
    assert "at least 16 characters" in result.stderr and "tooshort-secret" not in result.stderr


METRICS_KEY = "operator-metrics-key-24680"
M = {"Authorization": f"Bearer {METRICS_KEY}"}


def test_metrics_need_the_metrics_key_a_tenant_key_gets_403(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", api_keys=f"acme:{KEY_A},globex:{KEY_B}", metrics_key=METRICS_KEY)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        client.post("/documents", headers=A, json={"doc_id": "plan", "text": SECRET_A})
        client.post("/documents", headers=B, json={"doc_id": "other", "text": SECRET_B})
        for tenant_key in (A, B):
            refused = client.get("/metrics", headers=tenant_key)
            assert refused.status_code == 403, refused.text
            assert refused.json()["detail"]["code"] == "forbidden"
            assert "RAG_METRICS_KEY" in refused.json()["detail"]["message"]
            assert "acme" not in refused.text and "globex" not in refused.text
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer not-the-metrics-key-000"}).status_code == 401
        scraped = client.get("/metrics", headers=M)
        assert scraped.status_code == 200
        assert 'tenant="acme"' in scraped.text and 'tenant="globex"' in scraped.text
        # The metrics key reads /metrics and nothing else.
        elsewhere = client.get("/documents", headers=M)
        assert elsewhere.status_code == 403 and "only" in elsewhere.json()["detail"]["message"]


def test_metrics_without_a_metrics_key_are_closed_to_tenant_keys(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", api_keys=f"acme:{KEY_A}")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        refused = client.get("/metrics", headers=A)
        assert refused.status_code == 403
        assert "set RAG_METRICS_KEY" in refused.json()["detail"]["message"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"metrics_key": "short"}, "at least 16 characters"),
        ({"metrics_key": KEY_A, "api_keys": f"acme:{KEY_A}"}, "differ from every key in RAG_API_KEYS"),
    ],
)
def test_bad_metrics_key_fails_the_settings(tmp_path: Path, overrides: dict[str, str], fragment: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=fragment):
        make_settings(tmp_path / "data", **overrides)


def _from(server: LiveServer, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z is this machine's loopback)."""
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_failed_keys_are_limited_per_address_and_other_addresses_are_unaffected(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", api_keys=f"acme:{KEY_A}", auth_failures_per_minute=5)
    with LiveServer(create_app(settings, embedder=embedder)) as server, _from(server, "127.0.0.2") as guesser:
        statuses = [
            guesser.get("/documents", headers={"Authorization": f"Bearer guess-{n:020d}"}).status_code
            for n in range(300)
        ]
        # Five failures at once, then one more every 12 s: at most one refill while these run.
        assert statuses[:5] == [401] * 5 and statuses.count(401) <= 6, statuses
        assert statuses[-1] == 429
        limited = guesser.get("/ready", headers={"Authorization": "Bearer yet-another-guess-0000"})
        assert limited.status_code == 429 and limited.json()["detail"]["code"] == "rate_limited"
        assert "failed" in limited.json()["detail"]["message"]
        assert 1 <= int(limited.headers["retry-after"]) <= 12
        # The right key waits too from this address (else the answer would tell a right guess from a wrong one) ...
        assert guesser.get("/documents", headers=A).status_code == 429
        assert guesser.get("/health").status_code == 200
        # ... and works from any other address, which keeps its own budget of failures.
        with _from(server, "127.0.0.3") as colleague:
            assert colleague.get("/documents", headers=A).status_code == 200
            assert (
                colleague.get("/documents", headers={"Authorization": "Bearer a-typo-in-the-key-00"}).status_code == 401
            )


def test_metrics_key_closes_metrics_on_a_keyless_service_too(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data", metrics_key=METRICS_KEY)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=M).status_code == 200
        assert client.get("/documents").status_code == 200, "the other routes stay keyless"
