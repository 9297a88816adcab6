"""Fuzzing with schemathesis from the app's own OpenAPI schema: no 500 anywhere, every error in the one model."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from tests.conftest import LiveServer, copy_seeds, index_folder, make_settings

# Examples per operation: enough to hit every route with odd bodies, ids and headers, small enough for CI.
MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("fuzz")
    settings = make_settings(base / "data", max_body_bytes=256 * 1024)
    index_folder(settings, embedder, copy_seeds(base / "seeds"))
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        yield server


def one_error_model(ctx, response, case) -> bool | None:  # type: ignore[no-untyped-def]
    """Every 4xx/5xx body is {"detail": {"code": str, "message": str}} and nothing else."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert set(body) == {"detail"}, body
    assert set(body["detail"]) == {"code", "message"}, body
    assert isinstance(body["detail"]["code"], str) and body["detail"]["code"], body
    assert isinstance(body["detail"]["message"], str) and body["detail"]["message"], body
    return True


@pytest.mark.slow
def test_fuzz_every_route(fuzz_server: LiveServer) -> None:
    # Driven through hypothesis directly (one strategy per operation) rather than schemathesis' pytest plugin,
    # whose lazy-fixture mode does not run under this pytest.
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    seen: list[str] = []
    for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                base_url=fuzz_server.url,
                checks=[not_a_server_error, one_error_model, response_schema_conformance],
                timeout=60,
            )

        run()
        seen.append(operation.label)
    assert any(label.startswith("POST /documents") for label in seen), seen


def test_fuzz_covers_every_route(fuzz_server: LiveServer) -> None:
    import httpx

    paths = set(httpx.get(f"{fuzz_server.url}/openapi.json").json()["paths"])
    assert {"/ask", "/documents", "/documents/{doc_id}", "/health", "/ready", "/metrics"} <= paths
