"""Ingestion jobs over HTTP: 202 + Location, polling to done, batches, progress, cancel, tenants, restarts."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from tests.conftest import CHROMA_URL, ROOT, LiveServer, free_port, make_settings
from tests.index.test_pipeline import _pdf_bytes
from tests.processes import wait_until_ok

KEY_A = "jobs-key-of-tenant-a-0123456789"
KEY_B = "jobs-key-of-tenant-b-9876543210"
METRICS_KEY = "jobs-metrics-key-1357913579"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
ASYNC = {"Prefer": "respond-async"}
SYNC_LIMIT = 8 * 1024
FACT = "The harbour vault of Quillon opens with the code amber-lantern-42, chosen by the keeper Odessa Marrow."


def _filler(n: int, topic: str = "valve") -> str:
    """``n`` distinct sentences about nothing in particular (about 15 tokens each)."""
    return " ".join(
        f"Inspection {i} of the {topic} in sector {i % 97} found pressure at {i * 7 % 113} units on day {i % 31}."
        for i in range(n)
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path_factory.mktemp("jobs") / "data",
        api_keys=f"acme:{KEY_A},globex:{KEY_B}",
        metrics_key=METRICS_KEY,
        sync_upload_bytes=SYNC_LIMIT,
        rate_limit_per_minute=0,
    )
    with LiveServer(create_app(settings, embedder=embedder)) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _wait(http: httpx.Client, url: str, headers: dict[str, str], *, until: set[str], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(url, headers=headers)
        assert job.status_code == 200, job.text
        body = job.json()
        if body["status"] in until:
            return body
        assert time.monotonic() < deadline, f"job still {body['status']} after {timeout} s: {body}"
        time.sleep(0.1)


def test_large_upload_is_a_job_polled_to_done_then_answerable(http: httpx.Client) -> None:
    text = FACT + " " + _filler(350)
    assert len(text.encode()) > SYNC_LIMIT
    response = http.post("/documents", headers=A, json={"doc_id": "vault", "text": text})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["status_url"] == f"/jobs/{body['job_id']}"
    assert response.headers["location"] == body["status_url"]
    assert body["documents"] == [{"doc_id": "vault", "status": "queued", "chunks": 0, "error": None}]
    done = _wait(http, response.headers["location"], A, until={"done", "failed", "cancelled"})
    assert done["status"] == "done", done
    assert done["progress"]["unit"] == "chunks" and done["progress"]["done"] == done["progress"]["total"] > 10
    assert done["documents"][0]["status"] == "added"
    assert done["documents"][0]["chunks"] == done["progress"]["total"]
    assert done["finished_at"] >= done["created_at"] and done.get("error") is None
    stored = http.get("/documents/vault", headers=A).json()
    assert stored["chunks"] == done["progress"]["total"]
    answer = http.post("/ask", headers=A, json={"question": "What code opens the harbour vault of Quillon?"}).json()
    assert "amber-lantern-42" in answer["answer"] and {c["doc_id"] for c in answer["citations"]} == {"vault"}
    assert done["job_id"] in [j["job_id"] for j in http.get("/jobs", headers=A).json()["jobs"]]


def test_prefer_respond_async_makes_a_small_body_a_job(http: httpx.Client) -> None:
    small = {"doc_id": "small", "text": "The lighthouse keeper of Brannock feeds three grey cats every dawn."}
    response = http.post("/documents", headers={**A, **ASYNC}, json=small)
    assert response.status_code == 202, response.text
    assert response.headers["preference-applied"] == "respond-async"
    done = _wait(http, response.headers["location"], A, until={"done", "failed"})
    assert done["status"] == "done" and done["documents"][0]["status"] == "added"
    # Without the header, the same small body is still answered synchronously.
    again = http.post("/documents", headers=A, json={**small, "doc_id": "small-sync"})
    assert again.status_code == 201 and again.json()["chunks"] == 1


def test_batch_of_files_and_json_list_each_run_as_one_job(http: httpx.Client) -> None:
    files = [
        ("file", ("north.txt", b"The north gate of Tamsin is painted cobalt blue.", "text/plain")),
        ("file", ("south.md", b"# South\n\nThe south gate of Tamsin is painted saffron.", "text/markdown")),
        ("file", ("west.pdf", _pdf_bytes("The west gate of Tamsin is painted olive green."), "application/pdf")),
    ]
    response = http.post("/documents/batch", headers=A, files=files)
    assert response.status_code == 202, response.text
    done = _wait(http, response.headers["location"], A, until={"done", "failed"})
    assert done["status"] == "done", done
    assert [(d["doc_id"], d["status"]) for d in done["documents"]] == [
        ("north.txt", "added"),
        ("south.md", "added"),
        ("west.pdf", "added"),
    ]
    assert done["progress"]["done"] == done["progress"]["total"] == sum(d["chunks"] for d in done["documents"]) == 3
    answer = http.post("/ask", headers=A, json={"question": "What colour is the west gate of Tamsin?"}).json()
    assert "olive" in answer["answer"]
    listed = http.post(
        "/documents/batch", headers=A, json=[{"doc_id": "j1", "text": "One."}, {"text": "Two, by hash."}]
    )
    assert listed.status_code == 202, listed.text
    done = _wait(http, listed.headers["location"], A, until={"done", "failed"})
    assert done["status"] == "done" and [d["status"] for d in done["documents"]] == ["added", "added"]


def test_progress_moves_during_one_large_document(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("index.pipeline.PROGRESS_CHUNKS", 8)  # the worker reads it per document
    response = http.post("/documents", headers=A, json={"doc_id": "progress", "text": _filler(600, "pump")})
    assert response.status_code == 202
    url = response.headers["location"]
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = http.get(url, headers=A).json()
        seen.append((job["progress"]["done"], job["progress"]["total"]))
        if job["status"] == "done":
            break
        time.sleep(0.05)
    assert job["status"] == "done", job
    total = job["progress"]["total"]
    partial = {done for done, t in seen if t == total and 0 < done < total}
    assert len(partial) >= 2, f"progress was not seen moving: {seen}"
    assert [d for d, _ in seen] == sorted(d for d, _ in seen), "progress went backwards"


def test_cancel_stops_a_running_job_before_its_document_is_written(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("index.pipeline.PROGRESS_CHUNKS", 8)
    batch = [{"doc_id": "first", "text": "The first ledger of Ormond lists nine ships."}]
    batch.append({"doc_id": "huge", "text": _filler(2000, "turbine")})
    running = http.post("/documents/batch", headers=A, json=batch).json()
    url = running["status_url"]
    queued = http.post("/documents", headers={**A, **ASYNC}, json={"doc_id": "later", "text": "Queued behind."})
    assert queued.status_code == 202
    deadline = time.monotonic() + 30
    while True:
        job = http.get(url, headers=A).json()
        if job["documents"][1]["status"] == "running" and job["progress"]["done"] > job["documents"][0]["chunks"]:
            break
        assert job["status"] in {"queued", "running"} and time.monotonic() < deadline, job
        time.sleep(0.05)
    # The tenant's second job waits for its first: cancelling it ends it at once.
    later = http.delete(queued.headers["location"], headers=A)
    assert later.status_code == 200 and later.json()["status"] == "cancelled", later.text
    assert later.json()["documents"][0]["status"] == "cancelled"
    cancelled = http.delete(url, headers=A)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["finished_at"] is not None
    assert [(d["doc_id"], d["status"]) for d in body["documents"]] == [("first", "added"), ("huge", "cancelled")]
    assert http.get("/documents/first", headers=A).status_code == 200
    assert http.get("/documents/huge", headers=A).status_code == 404, "a cancelled document is half visible"
    assert http.get("/documents/later", headers=A).status_code == 404
    again = http.delete(url, headers=A)
    assert again.status_code == 409 and again.json()["detail"]["code"] == "job_finished"


def test_another_tenants_job_is_not_found(http: httpx.Client) -> None:
    mine = http.post("/documents", headers={**A, **ASYNC}, json={"doc_id": "acme-only", "text": "Acme's own note."})
    url = mine.headers["location"]
    assert http.get(url, headers=B).status_code == 404
    assert http.get(url, headers=B).json()["detail"]["code"] == "job_not_found"
    assert http.delete(url, headers=B).status_code == 404
    assert mine.json()["job_id"] not in [j["job_id"] for j in http.get("/jobs", headers=B).json()["jobs"]]
    assert _wait(http, url, A, until={"done", "failed"})["status"] == "done"
    assert http.get("/documents/acme-only", headers=B).status_code == 404


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "says"),
    [
        ("/documents", {"json": {"doc_id": "x", "text": "   "}}, 422, "no text"),
        ("/documents", {"files": {"file": ("a.exe", b"MZ", "application/octet-stream")}}, 415, ".exe"),
        ("/documents", {"files": {"file": ("bad.pdf", b"not a pdf at all", "application/pdf")}}, 422, "bad.pdf"),
        ("/documents", {"files": {"file": ("l1.txt", b"caf\xe9 \xff\xfe", "text/plain")}}, 422, "l1.txt"),
        ("/documents/batch", {"json": [{"text": "fine"}, {"text": ""}]}, 422, "documents.1"),
        ("/documents/batch", {"json": [{"doc_id": "d", "text": "a"}, {"doc_id": "d", "text": "b"}]}, 422, "twice"),
        ("/documents/batch", {"json": []}, 422, "documents"),
        (
            "/documents/batch",
            {"files": [("file", ("ok.txt", b"ok", "text/plain")), ("file", ("z.zip", b"", ""))]},
            415,
            ".zip",
        ),
        ("/documents/batch", {"content": b"text", "headers": {"Content-Type": "text/plain"}}, 415, "multipart"),
    ],
)
def test_bad_input_is_refused_at_once_and_queues_nothing(
    http: httpx.Client, path: str, kwargs: dict[str, Any], status: int, says: str
) -> None:
    before = len(http.get("/jobs", headers=B).json()["jobs"])
    kwargs = {**kwargs, "headers": {**B, **ASYNC, **kwargs.get("headers", {})}}
    response = http.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]["message"]
    assert len(http.get("/jobs", headers=B).json()["jobs"]) == before


def test_metrics_count_jobs_and_their_chunks(http: httpx.Client) -> None:
    done = http.post("/documents", headers={**B, **ASYNC}, json={"doc_id": "m", "text": "Metrics note of globex."})
    _wait(http, done.headers["location"], B, until={"done"})
    text = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}).text
    assert 'rag_jobs{status="queued"}' in text and 'rag_jobs{status="running"}' in text
    assert 'rag_job_duration_seconds_count{status="done"}' in text
    chunks = [line for line in text.splitlines() if line.startswith('rag_job_chunks_embedded_total{tenant="globex"}')]
    assert chunks and float(chunks[0].split()[-1]) >= 1


def test_a_job_running_when_the_server_is_killed_is_resumed_after_restart(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_LOG_FORMAT": "text",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if name in os.environ:
            env[name] = os.environ[name]
    if CHROMA_URL:  # .ci/run's Chroma server (the autouse fixture has cleared RAG_* from os.environ by now)
        env["RAG_CHROMA_URL"] = CHROMA_URL
        env["RAG_COLLECTION"] = f"jobs{port}x{os.getpid()}"
    url = f"http://127.0.0.1:{port}"

    def serve(log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert wait_until_ok(process, f"{url}/health", timeout=90, exited=log.read_text)
        return process

    first = serve(tmp_path / "first.log")
    try:
        text = FACT + " " + _filler(600, "boiler")
        big = {"doc_id": "big", "text": text}
        accepted = httpx.post(f"{url}/documents", headers=ASYNC, json=big, timeout=60)
        assert accepted.status_code == 202, accepted.text
        status_url = url + accepted.headers["location"]
        deadline = time.monotonic() + 60
        while httpx.get(status_url, timeout=10).json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    second = serve(tmp_path / "second.log")
    try:
        deadline = time.monotonic() + 120
        while (job := httpx.get(status_url, timeout=10).json())["status"] in {"queued", "running"}:
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done", job
        assert "resuming 1 job(s)" in (tmp_path / "second.log").read_text()
        documents = httpx.get(f"{url}/documents", timeout=10).json()["documents"]
        assert [(d["doc_id"], d["chunks"]) for d in documents] == [("big", job["progress"]["total"])]
        answer = httpx.post(f"{url}/ask", json={"question": "What code opens the harbour vault?"}, timeout=30).json()
        assert "amber-lantern-42" in answer["answer"]
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)


def test_pdf_upload_over_the_limit_is_a_job(http: httpx.Client) -> None:
    pdf = _pdf_bytes(_filler(150, "gauge"))
    assert len(pdf) > SYNC_LIMIT
    response = http.post("/documents", headers=A, files={"file": ("report.pdf", io.BytesIO(pdf), "application/pdf")})
    assert response.status_code == 202, response.text
    assert _wait(http, response.headers["location"], A, until={"done", "failed"})["status"] == "done"
    stored = http.get("/documents/report.pdf", headers=A).json()
    assert [p["page"] for p in stored["pages"]] == [1], "the job lost the PDF's pages"


def test_an_unusable_jobs_file_fails_jobs_only_until_moved_aside(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    jobs_db = tmp_path / "jobs.sqlite3"
    garbage = b"this is not an SQLite database, it is a note somebody saved here\n" * 100
    jobs_db.write_bytes(garbage)
    settings = make_settings(tmp_path / "data", jobs_db=jobs_db)
    with LiveServer(create_app(settings, embedder=embedder)) as live, httpx.Client(base_url=live.url) as http:
        refused = http.post("/documents", headers=ASYNC, json={"doc_id": "a", "text": "Queued text."})
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"]["code"] == "jobs_unavailable" and str(jobs_db) in refused.text
        assert http.get("/jobs").status_code == 503
        synchronous = http.post("/documents", json={"doc_id": "b", "text": "The quarry of Denholm closed in 1911."})
        assert synchronous.status_code == 201
        assert http.post("/ask", json={"question": "When did the quarry of Denholm close?"}).status_code == 200
        assert jobs_db.read_bytes() == garbage, "the unusable file was changed"
        jobs_db.rename(tmp_path / "jobs.sqlite3.bad")
        accepted = http.post("/documents", headers=ASYNC, json={"doc_id": "a", "text": "Queued text."})
        assert accepted.status_code == 202, accepted.text
        assert _wait(http, accepted.headers["location"], {}, until={"done", "failed"})["status"] == "done"
