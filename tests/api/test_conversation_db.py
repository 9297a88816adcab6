"""A conversations database that cannot be used (not SQLite, or tables of another shape) costs chat only.

`rag serve` once died at start-up on such a file (a raw traceback, exit 3), taking /ask and /documents with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.api.test_chroma_server import ApiProcess

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
QUESTION = "When were alpha reactors first tested?"


def _garbage(path: Path) -> None:
    path.write_bytes(b"these bytes are not an SQLite database\n" * 200)


def _wrong_conversations_table(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT)")
        db.execute("INSERT INTO conversations (title) VALUES ('kept by another program')")
    db.close()


def _wrong_turns_table(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE turns (id INTEGER PRIMARY KEY, body TEXT)")
    db.close()


@pytest.mark.parametrize(
    "spoil", [_garbage, _wrong_conversations_table, _wrong_turns_table], ids=["garbage", "conversations", "turns"]
)
def test_bad_conversations_db_costs_chat_only_with_503_that_names_the_file(
    tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    bad = tmp_path / "chat" / "conversations.sqlite3"
    bad.parent.mkdir()
    spoil(bad)
    before = bad.read_bytes()
    log = tmp_path / "serve.log"
    server = ApiProcess(
        {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_CONVERSATION_DB": str(bad), "RAG_DEVICE": "cpu"}, log
    )
    try:
        server.wait_ready(timeout=120)
        url = server.url
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.post("/documents", json={"doc_id": "alpha", "text": ALPHA}).status_code == 201
            asked = client.post("/ask", json={"question": QUESTION})
            assert asked.status_code == 200 and asked.json()["no_answer"] is False
            assert [d["doc_id"] for d in client.get("/documents").json()["documents"]] == ["alpha"]
            completion = client.post(
                "/v1/chat/completions",
                json={"model": "cited-answers", "messages": [{"role": "user", "content": QUESTION}]},
            )
            assert completion.status_code == 200, "the OpenAI-compatible endpoint keeps no conversations"

            for method, path, body in (
                ("POST", "/chat", {"message": QUESTION}),
                ("POST", "/chat", {"message": QUESTION, "stream": True}),
                ("GET", "/conversations/abc", None),
                ("DELETE", "/conversations/abc", None),
            ):
                response = client.request(method, path, json=body)
                assert response.status_code == 503, (method, path, response.text)
                detail = response.json()["detail"]
                assert detail["code"] == "conversations_unavailable"
                assert str(bad) in detail["message"] and "move it aside" in detail["message"]
        assert bad.read_bytes() == before, "the bad file is left as it was, for its owner to look at"
        logged = log.read_text(encoding="utf-8")
        assert str(bad) in logged and "conversations" in logged

        # Moved aside, the next request starts a new database: no restart needed.
        bad.rename(bad.with_suffix(".broken"))
        chat = httpx.post(f"{url}/chat", json={"message": QUESTION}, timeout=60)
        assert chat.status_code == 200, chat.text
        conversation = chat.json()["conversation_id"]
        assert httpx.get(f"{url}/conversations/{conversation}", timeout=60).json()["turns"][0]["message"] == QUESTION
    finally:
        server.stop()


def test_conversations_db_spoiled_while_in_use_is_conversations_unavailable(tmp_path: Path) -> None:
    from rag.conversation import ConversationStore
    from rag.errors import ConversationsUnavailable
    from rag.types import Answer

    path = tmp_path / "conversations.sqlite3"
    store = ConversationStore(path)
    answer = Answer(question="q", answer="a", no_answer=False, citations=[], passages=[], mode="extractive")
    store.append("one", tenant="t", message="q", answer=answer, create=True)
    for leftover in path.parent.glob("conversations.sqlite3-*"):  # the WAL files of the good database
        leftover.unlink()
    _garbage(path)
    with pytest.raises(ConversationsUnavailable, match="move it aside"):
        store.get("one", tenant="t")
    path.unlink()
    store.append("two", tenant="t", message="q", answer=answer, create=True)
    assert store.get("two", tenant="t").turns[0].message == "q"
