"""The job worker: threads that take queued ingestion jobs from the JobStore and index their documents.

A tenant's jobs run one at a time (the store's ``claim`` never hands out a second one of a tenant with one
running, in this process or a replica sharing the file); different tenants' jobs run side by side, up to
RAG_JOB_WORKERS. The work is numpy/torch embedding, which releases the GIL for most of its time, so questions keep
being answered meanwhile (README, "Jobs", has the measured cost).

Every document is written by ``Indexer.ingest``, the store's one crash-safe write of a document, so a job stopped
for any reason (cancelled, the process killed) leaves each document either fully stored or untouched. A job
cancelled mid-document stops at the next progress report, before that document is written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from index.pipeline import Indexer
from rag.errors import InvalidInput, JobsUnavailable
from rag.jobs import FINISHED, Job, JobStore, Owner

log = logging.getLogger(__name__)

# How often an idle worker looks for work queued by another replica (work queued here wakes it at once).
POLL_SECONDS = 1.0
# How often this process tells the store that its running jobs are alive (rag.jobs.STALE_SECONDS is 60).
BEAT_SECONDS = 10.0


class JobObserver(Protocol):
    """What the worker reports (api/metrics.py implements it)."""

    def job_chunks(self, tenant: str, chunks: int) -> None: ...

    def job_finished(self, tenant: str, status: str, seconds: float) -> None: ...

    def observe_ingest(self, tenant: str, result: str, chunks: int = 0) -> None: ...


class _Stop(Exception):
    """Raised from a progress report to stop the job's current document before it is written."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why  # "cancelled" or "shutdown"


class JobRunner:
    """Runs the store's jobs in ``workers`` threads; ``indexer_for(tenant)`` gives the indexer of a tenant."""

    def __init__(
        self,
        *,
        store: JobStore,
        indexer_for: Callable[[str], Indexer],
        workers: int = 1,
        observer: JobObserver | None = None,
    ) -> None:
        self.store = store
        self.indexer_for = indexer_for
        self.workers = workers
        self.observer = observer
        self.owner = Owner.this_process()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

    def start(self) -> None:
        """Resume the jobs a dead process left running, then start the worker threads."""
        try:
            resumed = self.store.reclaim(self.owner)
        except JobsUnavailable:
            resumed = []  # the store has logged why; the workers keep looking
        if resumed:
            log.warning("resuming %d job(s) interrupted by a stopped process: %s", len(resumed), ", ".join(resumed))
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._beat, name="job-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers; a job in flight goes back to the queue for the next start (or another replica)."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def submitted(self) -> None:
        """Wake a worker: a job was just queued."""
        self._wake.set()

    def _work(self) -> None:
        reclaimed = time.monotonic()
        while not self._stopping.is_set():
            try:
                if time.monotonic() - reclaimed > BEAT_SECONDS:  # jobs of a replica that died meanwhile
                    self.store.reclaim(self.owner)
                    reclaimed = time.monotonic()
                job = self.store.claim(self.owner)
            except JobsUnavailable:
                job = None  # the store has logged why; looked at again on the next round
            except Exception:
                log.exception("the jobs database %s cannot be read; retrying", self.store.path)
                job = None
            if job is None:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            self._wake.set()  # another worker may find another tenant's job
            with self._running_lock:
                self._running.add(job.job_id)
            try:
                self._run(job)
            except Exception as exc:  # a bug or a broken store: the job fails with it, the worker goes on
                log.exception("job %s failed", job.job_id)
                try:
                    self._end(job, "failed", f"{type(exc).__name__}: {exc}")
                except Exception:  # the store itself is broken: the job is reclaimed once it can be read again
                    log.exception("job %s could not be marked failed", job.job_id)
            finally:
                with self._running_lock:
                    self._running.discard(job.job_id)

    def _beat(self) -> None:
        while not self._stopping.wait(BEAT_SECONDS):
            with self._running_lock:
                running = list(self._running)
            try:
                self.store.beat(running)
            except JobsUnavailable:
                pass
            except Exception:
                log.exception("cannot record that jobs %s are alive", running)

    def _run(self, job: Job) -> None:
        """Index the job's documents not yet stored, in order, reporting progress in chunks."""
        log.info("job %s (tenant %s) started: %d document(s)", job.job_id, job.tenant, len(job.documents))
        indexer = self.indexer_for(job.tenant)
        finished = sum(d.chunks for d in job.documents if d.status not in {"queued", "running"})
        failures: list[str] = []
        for position, document in self.store.pending(job.job_id):
            counted = 0

            def report(done: int, total: int, position: int = position, base: int = finished) -> None:
                nonlocal counted
                if self._stopping.is_set():
                    raise _Stop("shutdown")
                if self.observer is not None and done > counted:
                    self.observer.job_chunks(job.tenant, done - counted)
                counted = done
                if self.store.progress(job.job_id, done=base + done, total=base + total, position=position):
                    raise _Stop("cancelled")

            try:
                report(0, 0)
                result = indexer.ingest(document, progress=report)
            except _Stop as stop:
                if stop.why == "shutdown":
                    self.store.release(job.job_id)
                    log.info("job %s given back to the queue: this process is stopping", job.job_id)
                    return
                self._end(job, "cancelled", None)
                return
            except InvalidInput as exc:  # this document cannot be indexed; the others still are
                failures.append(f"{document.doc_id}: {exc.message}")
                self.store.document_done(job.job_id, position, status="failed", chunks=0, error=exc.message)
                continue
            finished += result.chunks
            self.store.document_done(job.job_id, position, status=result.status, chunks=result.chunks)
            self.store.progress(job.job_id, done=finished, total=finished)
            if self.observer is not None:
                self.observer.observe_ingest(job.tenant, result.status, result.chunks)
        if failures:
            self._end(job, "failed", f"{len(failures)} document(s) could not be indexed: " + "; ".join(failures))
        else:
            self._end(job, "done", None)

    def _end(self, job: Job, status: str, error: str | None) -> None:
        current = self.store.get(job.job_id, tenant=job.tenant)
        if current.status in FINISHED:
            return
        self.store.finish(job.job_id, status, error=error)
        seconds = time.time() - (current.started_at or current.created_at)
        log.info("job %s %s after %.1f s%s", job.job_id, status, seconds, f": {error}" if error else "")
        if self.observer is not None:
            self.observer.job_finished(job.tenant, status, seconds)
