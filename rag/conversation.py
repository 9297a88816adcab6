"""Conversations: an SQLite store of chat turns (each with its full Answer) and the chat logic over RAGService.

The store is addressed by one setting (RAG_CONVERSATION_DB, default <RAG_DATA_DIR>/conversations.sqlite3) and
every row carries a ``tenant`` (today the service's collection name), so a conversation is only ever visible to
the tenant that made it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

from rag.errors import ConversationNotFound, ConversationsUnavailable
from rag.retrieval.followup import PriorTurn, history_from_exchanges
from rag.service import RAGService, validate_question
from rag.types import Answer

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    message TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, position)
);
CREATE INDEX IF NOT EXISTS conversations_tenant ON conversations(tenant, updated_at);
"""
# The columns each table must have; a file whose tables lack them is refused, never altered.
_COLUMNS = {
    "conversations": {"id", "tenant", "created_at", "updated_at"},
    "turns": {"conversation_id", "position", "message", "answer_json", "created_at"},
}


class Turn(BaseModel):
    """One exchange: the user's message and the Answer it got."""

    message: str = Field(description="What the user sent.")
    answer: Answer
    created_at: float = Field(description="Unix time of the turn.")


class Conversation(BaseModel):
    """A conversation with its turns, oldest first."""

    conversation_id: str
    created_at: float
    updated_at: float
    turns: list[Turn] = Field(default_factory=list)


class ConversationStore:
    """Conversations in one SQLite file; safe to share between threads (one short connection per call).

    A file that cannot be used (not SQLite, or tables of another shape) fails chat only: every call raises
    ConversationsUnavailable, naming the file, and the file is left untouched. Each call looks again, so moving the
    file aside (a new one is started) or repairing it heals the service without a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._opened = False
        self._problem: str | None = None  # why the file cannot be used, while it cannot (logged once per reason)
        try:
            self._open()
        except ConversationsUnavailable:
            pass  # logged with the file's path; chat answers conversations_unavailable until it is fixed

    def check(self) -> None:
        """Raise ConversationsUnavailable now if the file cannot be used (before a turn is answered for nothing)."""
        self._open()

    def _open(self) -> None:
        """Check the file's tables (creating them in a new file) before anything is written to it."""
        if self._opened:
            return
        with self._open_lock:  # a second thread may repeat the check: harmless, it only reads and creates if absent
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(sqlite3.connect(self.path, timeout=30)) as db:
                    _check_tables(db)
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
            except (sqlite3.DatabaseError, OSError, _WrongTables) as exc:
                raise self._unusable(str(exc)) from exc
            self._opened = True
            if self._problem is not None:
                log.info("conversations database %s is usable again", self.path)
                self._problem = None

    def _unusable(self, reason: str) -> ConversationsUnavailable:
        if reason != self._problem:
            log.error(
                "conversations database %s cannot be used: %s; chat fails with conversations_unavailable until "
                "the file is moved aside or repaired (other routes are not affected)",
                self.path,
                reason,
            )
            self._problem = reason
        return ConversationsUnavailable(
            f"chat is unavailable: the conversations database {self.path} cannot be used ({reason}); move it aside "
            "(a new one is started on the next request) or repair it, or point RAG_CONVERSATION_DB at another file"
        )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._open()
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as db:
                db.execute("PRAGMA foreign_keys=ON")
                with db:  # one transaction: committed on success, rolled back on error
                    yield db
        except sqlite3.IntegrityError:
            raise  # a bug of ours, not of the file
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
                raise ConversationsUnavailable(
                    f"the conversations database {self.path} stayed locked by another writer: retry in a moment"
                ) from exc
            # The file went bad under us (replaced, truncated, a table altered): check it again on the next call.
            self._opened = False
            raise self._unusable(str(exc)) from exc

    @staticmethod
    def new_id() -> str:
        """A fresh conversation id (the row is written with the first turn, so failed first turns leave none)."""
        return uuid.uuid4().hex

    def get(self, conversation_id: str, *, tenant: str) -> Conversation:
        """The conversation with its turns, or ConversationNotFound (also for another tenant's id)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT created_at, updated_at FROM conversations WHERE id = ? AND tenant = ?",
                (conversation_id, tenant),
            ).fetchone()
            if row is None:
                raise _not_found(conversation_id)
            rows = db.execute(
                "SELECT message, answer_json, created_at FROM turns WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        turns = [Turn(message=m, answer=Answer.model_validate_json(a), created_at=t) for m, a, t in rows]
        return Conversation(conversation_id=conversation_id, created_at=row[0], updated_at=row[1], turns=turns)

    def append(self, conversation_id: str, *, tenant: str, message: str, answer: Answer, create: bool = False) -> None:
        """Add a turn at the end of the conversation (``create``: start it with this turn)."""
        now = time.time()
        with self._write_lock, self._connect() as db:
            if create:
                db.execute(
                    "INSERT INTO conversations (id, tenant, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (conversation_id, tenant, now, now),
                )
            updated = db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ? AND tenant = ?", (now, conversation_id, tenant)
            ).rowcount
            if not updated:
                raise _not_found(conversation_id)
            db.execute(
                "INSERT INTO turns (conversation_id, position, message, answer_json, created_at) "
                "VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM turns WHERE conversation_id = ?), ?, ?, ?)",
                (conversation_id, conversation_id, message, answer.model_dump_json(), now),
            )

    def delete(self, conversation_id: str, *, tenant: str) -> None:
        """Remove a conversation and its turns, or raise ConversationNotFound."""
        with self._write_lock, self._connect() as db:
            deleted = db.execute(
                "DELETE FROM conversations WHERE id = ? AND tenant = ?", (conversation_id, tenant)
            ).rowcount
        if not deleted:
            raise _not_found(conversation_id)


def history_of(conversation: Conversation) -> list[PriorTurn]:
    """The conversation's turns as follow-up context: each question with the quotes its answer cited."""
    return history_from_exchanges(
        [(turn.message, [c.quote for c in turn.answer.citations]) for turn in conversation.turns]
    )


class ChatService:
    """Chat over RAGService: follow-ups resolved against the stored conversation, every turn persisted."""

    def __init__(self, *, service: RAGService, conversations: ConversationStore, tenant: str) -> None:
        self.service = service
        self.conversations = conversations
        self.tenant = tenant

    def send(self, message: str, *, conversation_id: str | None = None, top_k: int | None = None) -> tuple[str, Answer]:
        """Answer ``message`` in the conversation (a new one when no id is given); returns (id, answer)."""
        validate_question(message)  # before anything is written
        conversation_id, history, new = self._open(conversation_id)
        answer = self.service.ask(message, top_k=top_k, context=history)
        self.conversations.append(conversation_id, tenant=self.tenant, message=message, answer=answer, create=new)
        return conversation_id, answer

    def send_stream(
        self, message: str, *, conversation_id: str | None = None, top_k: int | None = None
    ) -> tuple[str, Iterator[str | Answer]]:
        """Like send, but the answer streams (text deltas, then the Answer); the turn is saved before the Answer."""
        validate_question(message)
        conversation_id, history, new = self._open(conversation_id)
        events = self.service.ask_stream(message, top_k=top_k, context=history)

        def persisted() -> Iterator[str | Answer]:
            for event in events:
                if isinstance(event, Answer):
                    self.conversations.append(
                        conversation_id, tenant=self.tenant, message=message, answer=event, create=new
                    )
                yield event

        return conversation_id, persisted()

    def get(self, conversation_id: str) -> Conversation:
        """The conversation with its turns."""
        return self.conversations.get(conversation_id, tenant=self.tenant)

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation."""
        self.conversations.delete(conversation_id, tenant=self.tenant)

    def _open(self, conversation_id: str | None) -> tuple[str, list[PriorTurn], bool]:
        self.conversations.check()
        if conversation_id is None:
            return self.conversations.new_id(), [], True
        return conversation_id, history_of(self.get(conversation_id)), False


class _WrongTables(Exception):
    """The file is SQLite, but its tables are not ours (another program's file, or another version's)."""


def _check_tables(db: sqlite3.Connection) -> None:
    """Raise _WrongTables when a table we use exists without the columns we use; absent tables are created later."""
    for table, wanted in _COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if have and not wanted <= have:
            raise _WrongTables(f"its table {table!r} has the columns {sorted(have)}, not {sorted(wanted)}")


def _not_found(conversation_id: str) -> ConversationNotFound:
    return ConversationNotFound(
        f"no conversation with id {conversation_id!r}: it was deleted or never existed; "
        "omit conversation_id to start a new one"
    )
