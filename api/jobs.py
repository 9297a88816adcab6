"""The HTTP side of ingestion jobs: queue validated documents as a job and describe a job in its response body."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.schemas import JobDocumentStatus, JobProgress, JobResponse
from api.tenancy import Tenant
from index.jobs import JobRunner
from rag.jobs import Job
from rag.types import Document


def wants_async(request: Request) -> bool:
    """Whether the client asked for a 202 and a job (RFC 7240 ``Prefer: respond-async``)."""
    prefer = ",".join(request.headers.getlist("prefer")).lower()
    return any(part.split(";")[0].strip() == "respond-async" for part in prefer.split(","))


def job_response(job: Job) -> JobResponse:
    """The response body of a job."""
    return JobResponse(
        job_id=job.job_id,
        status=job.status,  # type: ignore[arg-type]
        status_url=f"/jobs/{job.job_id}",
        progress=JobProgress(done=job.done, total=job.total),
        documents=[
            JobDocumentStatus(doc_id=d.doc_id, status=d.status, chunks=d.chunks, error=d.error) for d in job.documents
        ],
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


async def submit(request: Request, tenant: Tenant, documents: list[Document]) -> JSONResponse:
    """Store ``documents`` (validated) durably as a job of ``tenant``; answer 202 with it and a Location header."""
    runner: JobRunner = request.app.state.jobs
    job = await run_in_threadpool(runner.store.create, tenant=tenant.name, documents=documents)
    runner.submitted()
    body = job_response(job)
    headers = {"Location": body.status_url}
    if wants_async(request):
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(body.model_dump(), status_code=202, headers=headers)
