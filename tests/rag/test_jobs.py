"""The job store: a job whose process died is requeued at once, and failed (never left running) after
MAX_ATTEMPTS; a tenant's jobs are claimed one at a time, even by two processes sharing the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rag.jobs import MAX_ATTEMPTS, JobStore, Owner
from rag.types import Document


def _dead_owner() -> Owner:
    """The owner label of a real process of this host that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return Owner(Owner.this_process().host, process.pid, "gone")


def _doc(doc_id: str) -> Document:
    return Document.from_text(doc_id=doc_id, source=doc_id, text=f"The text of {doc_id}.")


def test_a_job_of_a_dead_process_is_requeued_then_failed_after_max_attempts(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create(tenant="acme", documents=[_doc("a")])
    me = Owner.this_process()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = store.claim(_dead_owner())
        assert claimed is not None and claimed.job_id == job.job_id and claimed.attempts == attempt
        assert store.get(job.job_id, tenant="acme").status == "running"
        assert store.reclaim(me) == [job.job_id]
        expected = "failed" if attempt == MAX_ATTEMPTS else "queued"
        assert store.get(job.job_id, tenant="acme").status == expected
    failed = store.get(job.job_id, tenant="acme")
    assert failed.error and "stopped 3 times" in failed.error and failed.finished_at is not None
    assert [d.status for d in failed.documents] == ["failed"]
    assert store.pending(job.job_id) == []  # the upload is dropped with the job


def test_a_live_process_keeps_its_job_and_a_tenant_runs_one_job_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    one, two = JobStore(path), JobStore(path)  # two replicas sharing the file
    first = one.create(tenant="acme", documents=[_doc("a")])
    one.create(tenant="acme", documents=[_doc("b")])
    other = two.create(tenant="globex", documents=[_doc("c")])
    replica_one, replica_two = Owner.this_process(), Owner("another-host", 1, "x")
    assert one.claim(replica_one).job_id == first.job_id  # type: ignore[union-attr]
    # acme's second job waits for its first; globex's runs meanwhile, on the other replica.
    assert two.claim(replica_two).job_id == other.job_id  # type: ignore[union-attr]
    assert two.claim(replica_two) is None
    # Neither replica takes the other's live job away.
    assert one.reclaim(replica_one) == [] and two.reclaim(replica_two) == []
    assert two.pending(first.job_id)[0][1] == _doc("a")
    paged = Document.from_pages(doc_id="p.pdf", source="p.pdf", pages=["Page one.", "Page two."])
    job = one.create(tenant="initech", documents=[paged])
    assert one.pending(job.job_id) == [(0, paged)]  # page starts come back as they went in
