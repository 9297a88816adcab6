"""Conversations over HTTP: follow-ups on the seeds, persistence across a restart, deletion, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from rag.config import Settings
from tests.conftest import LiveServer, copy_seeds, index_folder, make_settings

KILLINGS = "a delayed response to the killings of Alejandro Borda Casafranca, alias \u201cAlipio,\u201d"
# A second killing in a second document: a follow-up that ignored its context could cite either one.
ESCOBAR_DOC = (
    "Colombian drug lord Pablo Escobar was killed by police in Medellin on December 2, 1993. "
    "He had escaped from prison the year before. "
    "Escobar's Medellin Cartel once supplied most of the cocaine smuggled into the United States.\n"
)
ESCOBAR_KILLED = "Pablo Escobar was killed by police in Medellin on December 2, 1993."


@pytest.fixture(scope="module")
def chat_settings(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:  # type: ignore[no-untyped-def]
    """The seeds plus a document about another killing (indexed once for this module)."""
    base = tmp_path_factory.mktemp("chat")
    folder = copy_seeds(base / "docs")
    (folder / "escobar.txt").write_text(ESCOBAR_DOC, encoding="utf-8")
    settings = make_settings(base / "data")
    index_folder(settings, embedder, folder)
    return settings


@pytest.fixture(scope="module")
def chat_server(chat_settings: Settings, embedder) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(create_app(chat_settings, embedder=embedder)) as server:
        yield server


def _chat(server: LiveServer, message: str, conversation_id: str | None = None) -> dict:  # type: ignore[type-arg]
    payload: dict[str, object] = {"message": message}
    if conversation_id:
        payload["conversation_id"] = conversation_id
    response = httpx.post(f"{server.url}/chat", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _quotes(body: dict) -> str:  # type: ignore[type-arg]
    return " ".join(c["quote"] for c in body["citations"])


def _assert_exact_offsets(server: LiveServer, body: dict) -> None:  # type: ignore[type-arg]
    for c in body["citations"]:
        text = httpx.get(f"{server.url}/documents/{c['doc_id']}").json()["text"]
        assert text[c["start"] : c["end"]] == c["quote"]


@pytest.mark.parametrize("followup", ["when was he killed?", "what about Gabriel?"])
def test_chat_followup_cites_the_killings_sentence(chat_server: LiveServer, followup: str) -> None:
    first = _chat(chat_server, "Who is Alipio?")
    assert KILLINGS in _quotes(first)
    second = _chat(chat_server, followup, first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    assert second["no_answer"] is False
    assert second["question"] == followup
    assert second["query"] and second["query"] != followup
    assert KILLINGS in _quotes(second), second["answer"]
    if "Gabriel" in followup:
        assert "Martin Quispe Palomino, alias \u201cGabriel,\u201d" in _quotes(second)
    _assert_exact_offsets(chat_server, second)


def test_chat_same_followup_in_another_conversation_cites_the_other_killing(chat_server: LiveServer) -> None:
    # The control: the same words after a question about someone else must cite a different passage.
    first = _chat(chat_server, "Who was Pablo Escobar?")
    second = _chat(chat_server, "when was he killed?", first["conversation_id"])
    assert second["query"] == "when was Pablo Escobar killed?"
    assert ESCOBAR_KILLED in _quotes(second), second["answer"]
    assert KILLINGS not in _quotes(second)
    _assert_exact_offsets(chat_server, second)


def test_chat_change_of_topic_is_not_dragged_back(chat_server: LiveServer) -> None:
    first = _chat(chat_server, "Who is Alipio?")
    off_topic = _chat(chat_server, "What is the capital of France?", first["conversation_id"])
    assert off_topic["no_answer"] is True and off_topic["citations"] == []


def test_chat_conversation_survives_restart_and_delete_removes_it(
    tmp_path: Path, chat_settings: Settings, embedder
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(chat_settings.data_dir, conversation_db=tmp_path / "chats" / "conversations.sqlite3")
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        first = _chat(server, "Who is Alipio?")
        conversation_id = first["conversation_id"]
        _chat(server, "when was he killed?", conversation_id)
    assert (tmp_path / "chats" / "conversations.sqlite3").is_file()
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        stored = httpx.get(f"{server.url}/conversations/{conversation_id}").json()
        assert [t["message"] for t in stored["turns"]] == ["Who is Alipio?", "when was he killed?"]
        assert stored["turns"][0]["answer"]["citations"] == first["citations"]
        # The restarted server still resolves follow-ups against the stored turns.
        third = _chat(server, "what about Gabriel?", conversation_id)
        assert "Gabriel" in third["query"]
        assert len(httpx.get(f"{server.url}/conversations/{conversation_id}").json()["turns"]) == 3
        assert httpx.delete(f"{server.url}/conversations/{conversation_id}").status_code == 204
        gone = httpx.get(f"{server.url}/conversations/{conversation_id}")
        assert gone.status_code == 404
        assert gone.json()["detail"]["code"] == "conversation_not_found"
        again = httpx.delete(f"{server.url}/conversations/{conversation_id}")
        assert again.status_code == 404
        followup = httpx.post(f"{server.url}/chat", json={"conversation_id": conversation_id, "message": "and him?"})
        assert followup.status_code == 404


def test_chat_other_tenant_cannot_see_conversation(tmp_path: Path, chat_settings: Settings, embedder) -> None:  # type: ignore[no-untyped-def]
    from rag.conversation import ConversationStore
    from rag.errors import ConversationNotFound
    from rag.types import Answer

    store = ConversationStore(tmp_path / "c.sqlite3")
    cid = store.new_id()
    store.append(cid, tenant="a", message="hi", answer=Answer(question="hi", answer="x", no_answer=True), create=True)
    assert len(store.get(cid, tenant="a").turns) == 1
    with pytest.raises(ConversationNotFound):
        store.get(cid, tenant="b")
    with pytest.raises(ConversationNotFound):
        store.delete(cid, tenant="b")


def _events(response: httpx.Response) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    events = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_chat_stream_sends_deltas_then_the_answer_and_persists(chat_server: LiveServer) -> None:
    with httpx.stream(
        "POST", f"{chat_server.url}/chat", json={"message": "Who is Alipio?", "stream": True}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        response.read()
    events = _events(response)
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "answer"
    assert set(names[1:-1]) == {"delta"} and len(names) > 3
    answer = events[-1][1]
    assert "".join(data["text"] for name, data in events if name == "delta") == answer["answer"]
    assert KILLINGS in _quotes(answer)
    cid = events[0][1]["conversation_id"]
    assert answer["conversation_id"] == cid
    stored = httpx.get(f"{chat_server.url}/conversations/{cid}").json()
    assert stored["turns"][0]["answer"]["answer"] == answer["answer"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"message": ""}, 422, "invalid_request"),
        ({"message": "  \n "}, 422, "invalid_question"),
        ({"message": "x" * 2001}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"message": "Who is Alipio?", "stream": True, "conversation_id": "nope"}, 404, "conversation_not_found"),
        ({"message": "Who is Alipio?", "conversation_id": "nope"}, 404, "conversation_not_found"),
    ],
)
def test_chat_bad_request_uses_the_one_error_model(
    chat_server: LiveServer, payload: dict, status: int, code: str
) -> None:  # type: ignore[type-arg]
    response = httpx.post(f"{chat_server.url}/chat", json=payload, timeout=60)
    assert response.status_code == status
    assert response.json()["detail"]["code"] == code
    assert response.json()["detail"]["message"]


def test_chat_empty_message_creates_no_conversation(tmp_path: Path, chat_settings: Settings, embedder) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    db = tmp_path / "c.sqlite3"
    settings = make_settings(chat_settings.data_dir, conversation_db=db)
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        assert httpx.post(f"{server.url}/chat", json={"message": "   "}).status_code == 422
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 0


def test_chat_routes_are_in_openapi(chat_server: LiveServer) -> None:
    schema = httpx.get(f"{chat_server.url}/openapi.json").json()
    assert {"/chat", "/conversations/{conversation_id}", "/v1/chat/completions", "/v1/models"} <= set(schema["paths"])
    assert schema["paths"]["/chat"]["post"]["description"]
    assert "conversation_id" in schema["components"]["schemas"]["ChatResponse"]["properties"]
    page = httpx.get(f"{chat_server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{chat_server.url}/static/app.js").status_code == 200
