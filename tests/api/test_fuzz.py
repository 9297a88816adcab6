"""Fuzzing with schemathesis from the app's own OpenAPI schema: no 500 anywhere, every error in the one model.

Schemathesis never generates lone surrogates (they cannot be encoded for the wire as text) nor deep nesting, the
two inputs that once reached a 500: a third pass takes its valid JSON bodies and plants one of them in each, and
explicit cases below try every string field of every JSON route.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


def hostile_body(body: Any, data: st.DataObject) -> tuple[bytes, bool]:
    """``body`` as JSON bytes with one hostile change, and whether it must be refused: a lone surrogate in one of
    its strings (or keys) always is; one of its values buried under 100 levels of arrays or objects may be valid
    (where the value is ignored), under thousands of levels never is."""
    leaves: list[tuple[Any, Any]] = []  # (container, key) of every value; (None, None) is the body itself
    stack: list[tuple[Any, Any, Any]] = [(None, None, body)]
    while stack:
        parent, key, value = stack.pop()
        leaves.append((parent, key))
        if isinstance(value, dict):
            stack.extend((value, k, v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((value, i, v) for i, v in enumerate(value))
    parent, key = data.draw(st.sampled_from(leaves), label="where")
    current = body if parent is None else parent[key]
    marker = "\x00hostile\x00"
    if data.draw(st.booleans(), label="surrogate"):
        surrogate = data.draw(st.sampled_from(SURROGATES), label="which")
        if isinstance(current, str):
            at = data.draw(st.integers(0, len(current)), label="at")
            new: Any = current[:at] + surrogate + current[at:]
        elif isinstance(parent, dict) and data.draw(st.booleans(), label="in key"):
            parent[key + surrogate] = parent.pop(key)
            return json.dumps(body).encode(), True
        else:
            new = surrogate
        if parent is None:
            return json.dumps(new).encode(), True
        parent[key] = new
        return json.dumps(body).encode(), True
    depth = data.draw(st.sampled_from([100, 5_000, 100_000]), label="depth")
    opener, closer = data.draw(st.sampled_from([("[", "]"), ('{"a":', "}")]), label="brackets")
    if parent is None:
        body = marker
    else:
        parent[key] = marker
    text = json.dumps(body)
    return text.replace(json.dumps(marker), opener * depth + "1" + closer * depth).encode(), depth > 1000


@pytest.mark.slow
def test_fuzz_surrogates_and_nesting_in_every_json_body(fuzz_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    json_operations = [op for op in operations if op.body and any(b.media_type == "application/json" for b in op.body)]
    labels = {op.label for op in json_operations}
    assert {"POST /ask", "POST /chat", "POST /documents", "POST /v1/chat/completions", "POST /eval"} <= labels
    for operation in json_operations:

        @given(case=operation.as_strategy(media_type="application/json"), data=st.data())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case, data) -> None:  # type: ignore[no-untyped-def]
            case.body, refused = hostile_body(case.body, data)
            # Bytes go out as they are, and without this header as no media type at all.
            response = case.call(base_url=fuzz_server.url, headers={"content-type": "application/json"}, timeout=60)
            allowed = {413, 422} if refused else {200, 201, 404, 413, 422, 503}
            assert response.status_code in allowed, (case.body[:300], response.status_code, response.text[:300])
            one_error_model(None, response, case)

        run()


SURROGATE = "who is \ud800 Alipio?"
ASK = {"question": "Who is Alipio?"}
USER = {"role": "user", "content": "Who is Alipio?"}
EVAL_ITEM = {"id": "q1", "question": "Who is Alipio?"}
# Every string a JSON route takes, each with a lone surrogate in it (the field named in the error message).
SURROGATE_CASES = [
    ("/ask", {"question": SURROGATE}, "question"),
    ("/chat", {"message": SURROGATE}, "message"),
    ("/chat", {"message": "Who is Alipio?", "conversation_id": "\udfff"}, "conversation_id"),
    ("/documents", {"text": SURROGATE}, "text"),
    ("/documents", {"text": "Alipio led a faction.", "doc_id": "a\udc00"}, "doc_id"),
    ("/documents", {"text": "Alipio led a faction.", "source": "a\udc00"}, "source"),
    ("/documents", {"text": "Alipio led a faction.", "title": "\ud800"}, "title"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": SURROGATE}]}, "messages.0.content"),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]},
        "messages.0.content.0.text",
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": SURROGATE}, USER]},
        "messages.1.content",
    ),
    ("/v1/chat/completions", {"model": "\ud800", "messages": [USER]}, "model"),
    ("/v1/chat/completions", {"model": "\ud800", "messages": [USER], "stream": True}, "model"),
    ("/v1/chat/completions", {"messages": [{"role": "\ud800", "content": "hi"}]}, "messages.0.role"),
    ("/eval", {"items": [{**EVAL_ITEM, "answers": [SURROGATE]}]}, "items.0.answers.0"),
    ("/eval", {"items": [{**EVAL_ITEM, "gold_quotes": [SURROGATE]}]}, "items.0.gold_quotes.0"),
    ("/eval", {"items": [{**EVAL_ITEM, "gold_doc_ids": ["\udc00"]}]}, "items.0.gold_doc_ids.0"),
    ("/eval", {"items": [{**EVAL_ITEM, "id": "\udc00"}]}, "items.0.id"),
    ("/ask", {**ASK, "\ud800": 1}, "body"),
]


@pytest.mark.parametrize(("path", "body", "where"), SURROGATE_CASES, ids=[f"{c[0]}:{c[2]}" for c in SURROGATE_CASES])
def test_lone_surrogate_anywhere_is_422_naming_the_field(
    fuzz_server: LiveServer, path: str, body: Any, where: str
) -> None:
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape \ud800, as a client would send it
    assert "\\ud" in raw
    response = httpx.post(
        f"{fuzz_server.url}{path}", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] in {"invalid_request", "invalid_input"}, detail
    assert "surrogate" in detail["message"] and where in detail["message"], detail


NESTED_FIELDS = {"/ask": "question", "/chat": "message", "/documents": "text", "/v1/chat/completions": "messages"}


@pytest.mark.parametrize(("path", "field"), [*NESTED_FIELDS.items(), ("/eval", "items")])
@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_json_is_422(fuzz_server: LiveServer, path: str, field: str, depth: int) -> None:
    raw = f'{{"{field}": ' + "[" * depth + "]" * depth + "}"
    response = httpx.post(
        f"{fuzz_server.url}{path}", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 422, response.text[:300]
    detail = response.json()["detail"]
    assert detail["code"] in {"invalid_request", "invalid_input"}, detail
    if depth > 1000:
        assert "nested" in detail["message"], detail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"question": "who is \xed\xa0\x80 Alipio?"}', "question: holds a lone UTF-16 surrogate (\\ud800"),
        (b'{"question": "who is \xff Alipio?"}', "not valid UTF-8 (byte 21)"),
    ],
    ids=["utf8-encoded-surrogate", "invalid-utf8"],
)
def test_raw_bytes_that_are_not_utf8_text_are_422(fuzz_server: LiveServer, raw: bytes, expected: str) -> None:
    # Python's JSON decoder reads bytes with 'surrogatepass': a surrogate encoded as UTF-8 bytes gets in that way too.
    response = httpx.post(f"{fuzz_server.url}/ask", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]["message"], response.text


def test_surrogate_pairs_are_text_not_errors(fuzz_server: LiveServer) -> None:
    # A valid pair (an emoji, escaped as JSON allows) is one character: it must go through.
    raw = json.dumps({"messages": [{"role": "user", "content": "Who is Alipio? \U0001f600"}]})
    assert "\\ud83d\\ude00" in raw
    response = httpx.post(
        f"{fuzz_server.url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 200, response.text


def test_fuzz_covers_every_route(fuzz_server: LiveServer) -> None:
    import httpx

    paths = set(httpx.get(f"{fuzz_server.url}/openapi.json").json()["paths"])
    assert {"/ask", "/documents", "/documents/{doc_id}", "/health", "/ready", "/metrics"} <= paths
