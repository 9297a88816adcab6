"""Ingestion jobs: an SQLite store of jobs, their documents and the uploads they were given.

The store is addressed by one setting (RAG_JOBS_DB, default <RAG_DATA_DIR>/jobs.sqlite3, beside the
conversations). An upload is validated and written here, whole, before the client is answered 202, so a job
survives a restart; a document's payload is dropped once it is stored in the index. Every row carries its tenant,
and every read names it, so a job is only ever visible to the tenant that made it. Replicas pointed at one file
agree on every job: a job is claimed by one process in one transaction (``claim``), and a process that dies with a
job running leaves it to the next one that looks (``reclaim``). index/jobs.py runs the jobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import JobFinished, JobNotFound, JobsUnavailable
from rag.types import Document

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_documents (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    status TEXT NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    payload TEXT,
    error TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
"""

FINISHED = frozenset({"done", "failed", "cancelled"})
# A running job whose process has not written for this long is taken to be abandoned (its process died on
# another machine; on this machine a dead process is noticed at once).
STALE_SECONDS = 60.0
# A job interrupted this many times (its process died each time) is marked failed instead of being tried again.
MAX_ATTEMPTS = 3


@dataclass
class JobDocument:
    """One document of a job: ``queued``, ``running``, then ``added``/``updated``/``unchanged``, ``failed`` or
    ``cancelled``."""

    doc_id: str
    status: str
    chunks: int = 0
    error: str | None = None


@dataclass
class Job:
    """A job's state as the store holds it."""

    job_id: str
    tenant: str
    status: str
    created_at: float
    done: int = 0
    total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    documents: list[JobDocument] = field(default_factory=list)


@dataclass(frozen=True)
class Owner:
    """The process running a job: its host, its pid and a token of this start (pids are reused, in containers
    especially)."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])

    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    def has_gone(self, label: str) -> bool:
        """Whether the process ``label`` names is known to be gone (on this host: dead, or a pid now ours)."""
        host, _, rest = label.partition(":")
        pid_text, _, token = rest.partition(":")
        if host != self.host or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == self.pid:
            return token != self.token
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class JobStore:
    """Jobs in one SQLite file; safe to share between threads and processes (one short connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._opened = False
        self._problem: str | None = None  # why the file cannot be used, while it cannot (logged once per reason)
        try:
            self._open()
        except JobsUnavailable:
            pass  # logged with the file's path; jobs answer jobs_unavailable until it is fixed

    def _open(self) -> None:
        if self._opened:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise self._unusable(str(exc)) from exc
        self._opened = True
        if self._problem is not None:
            log.info("jobs database %s is usable again", self.path)
            self._problem = None

    def _unusable(self, reason: str) -> JobsUnavailable:
        if reason != self._problem:
            log.error(
                "jobs database %s cannot be used: %s; large and asynchronous uploads fail with jobs_unavailable until "
                "the file is moved aside or repaired (other routes are not affected)",
                self.path,
                reason,
            )
            self._problem = reason
        return JobsUnavailable(
            f"ingestion jobs are unavailable: the jobs database {self.path} cannot be used ({reason}); move it aside "
            "(a new one is started on the next request) or point RAG_JOBS_DB at another file. Uploads up to "
            "RAG_SYNC_UPLOAD_BYTES without 'Prefer: respond-async' still work"
        )

    @contextmanager
    def _connect(self, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        self._open()
        try:
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
                db.execute("PRAGMA foreign_keys=ON")
                db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise  # a bug of ours, not of the file
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
                raise JobsUnavailable(
                    f"the jobs database {self.path} stayed locked by another writer: retry in a moment"
                ) from exc
            self._opened = False  # the file went bad under us: check it again on the next call
            raise self._unusable(str(exc)) from exc

    # --- the API's side ---------------------------------------------------------------------------------------
    def create(self, *, tenant: str, documents: list[Document]) -> Job:
        """Store a new queued job holding ``documents`` (validated already), in one transaction."""
        job = Job(job_id=uuid.uuid4().hex, tenant=tenant, status="queued", created_at=time.time())
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, tenant, status, created_at) VALUES (?, ?, ?, ?)",
                (job.job_id, tenant, job.status, job.created_at),
            )
            db.executemany(
                "INSERT INTO job_documents (job_id, position, doc_id, status, payload) VALUES (?, ?, ?, 'queued', ?)",
                [(job.job_id, i, d.doc_id, json.dumps(dataclasses.asdict(d))) for i, d in enumerate(documents)],
            )
        job.documents = [JobDocument(doc_id=d.doc_id, status="queued") for d in documents]
        return job

    def get(self, job_id: str, *, tenant: str) -> Job:
        """The tenant's job ``job_id`` with its documents (JobNotFound for another tenant's)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ? AND tenant = ?", (job_id, tenant)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}: GET /jobs lists this key's jobs")
            return self._job(db, row)

    def list_jobs(self, *, tenant: str, limit: int = 50) -> list[Job]:
        """The tenant's most recent jobs, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE tenant = ? ORDER BY created_at DESC, id LIMIT ?", (tenant, limit)
            ).fetchall()
            return [self._job(db, row) for row in rows]

    def cancel(self, job_id: str, *, tenant: str) -> Job:
        """Cancel a queued job now, or ask its worker to stop a running one; JobFinished for a finished one."""
        with self._connect(immediate=True) as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ? AND tenant = ?", (job_id, tenant)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}: GET /jobs lists this key's jobs")
            if row[0] in FINISHED:
                raise JobFinished(f"job {job_id} is already {row[0]}: only a queued or running job can be cancelled")
            if row[0] == "queued":
                self._finish(db, job_id, "cancelled", None)
            else:
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self.get(job_id, tenant=tenant)

    def counts(self) -> dict[str, int]:
        """Jobs per status, over every tenant (for the metrics)."""
        with self._connect() as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    # --- the worker's side ------------------------------------------------------------------------------------
    def claim(self, owner: Owner) -> Job | None:
        """Mark the oldest queued job of a tenant with none running as run by ``owner``, and return it."""
        now = time.time()
        with self._connect(immediate=True) as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND tenant NOT IN "
                "(SELECT tenant FROM jobs WHERE status = 'running') ORDER BY created_at, id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', owner = ?, heartbeat = ?, started_at = COALESCE(started_at, ?), "
                "attempts = attempts + 1 WHERE id = ?",
                (owner.label(), now, now, row[0]),
            )
            job_row = db.execute("SELECT * FROM jobs WHERE id = ?", (row[0],)).fetchone()
            return self._job(db, job_row)

    def reclaim(self, owner: Owner) -> list[str]:
        """Requeue the running jobs whose process is gone (or mark them failed after MAX_ATTEMPTS); their ids."""
        now = time.time()
        found: list[str] = []
        with self._connect(immediate=True) as db:
            rows = db.execute("SELECT id, owner, heartbeat, attempts FROM jobs WHERE status = 'running'").fetchall()
            for job_id, label, heartbeat, attempts in rows:
                if label == owner.label():
                    continue
                if not (owner.has_gone(label or "") or (heartbeat or 0) < now - STALE_SECONDS):
                    continue
                found.append(job_id)
                db.execute(
                    "UPDATE job_documents SET status = 'queued' WHERE job_id = ? AND status = 'running'", (job_id,)
                )
                if attempts >= MAX_ATTEMPTS:
                    self._finish(
                        db,
                        job_id,
                        "failed",
                        f"the process running this job stopped {attempts} times (last: {label}); it is not tried again",
                    )
                else:
                    db.execute("UPDATE jobs SET status = 'queued', owner = NULL WHERE id = ?", (job_id,))
        return found

    def release(self, job_id: str) -> None:
        """Give a running job back to the queue (this process is stopping), without counting an attempt."""
        with self._connect(immediate=True) as db:
            db.execute(
                "UPDATE jobs SET status = 'queued', owner = NULL, attempts = MAX(attempts - 1, 0) "
                "WHERE id = ? AND status = 'running'",
                (job_id,),
            )
            db.execute("UPDATE job_documents SET status = 'queued' WHERE job_id = ? AND status = 'running'", (job_id,))

    def pending(self, job_id: str) -> list[tuple[int, Document]]:
        """The documents of a job still to be stored, in order."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT position, payload FROM job_documents WHERE job_id = ? AND status IN ('queued', 'running') "
                "ORDER BY position",
                (job_id,),
            ).fetchall()
        return [(position, _document(payload)) for position, payload in rows]

    def progress(self, job_id: str, *, done: int, total: int, position: int | None = None) -> bool:
        """Record progress (and that the worker lives); whether the job was asked to stop since."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET done = ?, total = ?, heartbeat = ? WHERE id = ?", (done, total, time.time(), job_id)
            )
            if position is not None:
                db.execute(
                    "UPDATE job_documents SET status = 'running' WHERE job_id = ? AND position = ? AND status = 'queued'",
                    (job_id, position),
                )
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def beat(self, job_ids: list[str]) -> None:
        """Say that this process still runs these jobs."""
        if job_ids:
            with self._connect() as db:
                db.executemany("UPDATE jobs SET heartbeat = ? WHERE id = ?", [(time.time(), j) for j in job_ids])

    def document_done(self, job_id: str, position: int, *, status: str, chunks: int, error: str | None = None) -> None:
        """Record how one document ended; its payload is no longer needed."""
        with self._connect() as db:
            db.execute(
                "UPDATE job_documents SET status = ?, chunks = ?, error = ?, payload = NULL WHERE job_id = ? "
                "AND position = ?",
                (status, chunks, error, job_id, position),
            )

    def finish(self, job_id: str, status: str, *, error: str | None = None) -> None:
        """End a job as done, failed or cancelled; documents not reached are marked so and their payloads dropped."""
        with self._connect(immediate=True) as db:
            self._finish(db, job_id, status, error)

    @staticmethod
    def _finish(db: sqlite3.Connection, job_id: str, status: str, error: str | None) -> None:
        leftover = "cancelled" if status == "cancelled" else "failed"
        db.execute(
            "UPDATE job_documents SET status = ?, payload = NULL WHERE job_id = ? AND status IN ('queued', 'running')",
            (leftover, job_id),
        )
        db.execute(
            "UPDATE jobs SET status = ?, error = ?, finished_at = ?, owner = NULL WHERE id = ?",
            (status, error, time.time(), job_id),
        )

    @staticmethod
    def _job(db: sqlite3.Connection, row: Any) -> Job:
        (job_id, tenant, status, created_at, started_at, finished_at, error, done, total, _, _, attempts, cancel) = row
        documents = [
            JobDocument(doc_id=d, status=s, chunks=c, error=e)
            for d, s, c, e in db.execute(
                "SELECT doc_id, status, chunks, error FROM job_documents WHERE job_id = ? ORDER BY position", (job_id,)
            )
        ]
        return Job(
            job_id=str(job_id),
            tenant=str(tenant),
            status=str(status),
            created_at=float(created_at),
            started_at=started_at,
            finished_at=finished_at,
            error=error,
            done=int(done),
            total=int(total),
            attempts=int(attempts),
            cancel_requested=bool(cancel),
            documents=documents,
        )


def _document(payload: str) -> Document:
    """A Document back from its JSON (its sequences, such as ``page_starts``, were tuples: JSON made them lists)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(payload).items()}
    return Document(**fields)
