"""Ingestion jobs: upload several documents at once, follow a job's progress, list and cancel the caller's jobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.deps import ERRORS, TenantDep
from api.errors import NESTED_TOO_DEEP, unsupported_media_type
from api.jobs import job_response, submit
from api.routes.documents import check_suffix, describe_validation, document_from_file, document_from_request
from api.schemas import BatchRequest, JobListResponse, JobResponse
from index.jobs import JobRunner
from index.loaders import SUPPORTED
from rag.errors import InvalidInput
from rag.jobs import FINISHED
from rag.types import Document

router = APIRouter(tags=["jobs"])

# Documents in one batch request.
MAX_BATCH_DOCUMENTS = 1000
# How long DELETE /jobs/{id} waits for a running job to stop before answering 202 (it stops at its next progress
# report, every PROGRESS_CHUNKS chunks).
CANCEL_WAIT_SECONDS = 10.0

_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": f"One part per file ({', '.join(sorted(SUPPORTED))}); each file's name "
                            "is its doc_id and source.",
                        }
                    },
                }
            },
        },
    }
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ERRORS[422]["model"], "description": "The job has already ended (job_finished)"}
}


@router.post(
    "/documents/batch",
    response_model=JobResponse,
    status_code=202,
    responses={415: {"model": ERRORS[422]["model"], "description": "Not JSON or multipart, or a file type"}, **ERRORS},
    openapi_extra=_BATCH_BODY,
)
async def add_batch(request: Request, tenant: TenantDep) -> JSONResponse:
    """Queue several documents (repeated multipart 'file' parts, or JSON documents) as one job; answers 202."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    max_chars = tenant.indexer.max_document_chars
    if content_type == "application/json":
        documents = await _batch_from_json(request, max_chars=max_chars)
    elif content_type == "multipart/form-data":
        documents = await _batch_from_upload(request, max_chars=max_chars)
    else:
        raise unsupported_media_type("send multipart/form-data with one 'file' part per file, or application/json")
    seen: set[str] = set()
    for document in documents:
        if document.doc_id in seen:
            raise InvalidInput(f"doc_id {document.doc_id!r} appears twice in the batch: give each document its own")
        seen.add(document.doc_id)
    return await submit(request, tenant, documents)


async def _batch_from_json(request: Request, *, max_chars: int | None) -> list[Document]:
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput('the body is not valid JSON: send {"documents": [{"text": "..."}, ...]}') from exc
    except RecursionError as exc:
        raise InvalidInput(NESTED_TOO_DEEP) from exc
    if isinstance(payload, list):
        payload = {"documents": payload}
    try:
        batch = BatchRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc)) from exc
    _check_count(len(batch.documents))
    documents = []
    for i, req in enumerate(batch.documents):
        try:
            documents.append(document_from_request(req, max_chars=max_chars))
        except InvalidInput as exc:
            raise InvalidInput(f"documents.{i}: {exc.message}") from exc
    return documents


async def _batch_from_upload(request: Request, *, max_chars: int | None) -> list[Document]:
    form = await request.form(max_files=MAX_BATCH_DOCUMENTS, max_fields=8)
    try:
        uploads = form.getlist("file")
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise InvalidInput("file: send each document as a multipart part named 'file' (with a filename)")
        _check_count(len(uploads))
        files = []
        for upload in uploads:
            assert isinstance(upload, UploadFile)
            name = Path(upload.filename or "").name
            check_suffix(name)
            files.append((name, await upload.read()))
    finally:
        await form.close()
    return [await document_from_file(name, data, doc_id=name, source=name, max_chars=max_chars) for name, data in files]


def _check_count(count: int) -> None:
    if count > MAX_BATCH_DOCUMENTS:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH_DOCUMENTS} documents ({count} sent): split it")


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.jobs
    return runner


@router.get("/jobs", response_model=JobListResponse, responses=ERRORS)
async def list_jobs(
    request: Request, tenant: TenantDep, limit: int = Query(50, ge=1, le=500, description="Most recent jobs.")
) -> JobListResponse:
    """List the caller's jobs, newest first."""
    jobs = await run_in_threadpool(_runner(request).store.list_jobs, tenant=tenant.name, limit=limit)
    return JobListResponse(jobs=[job_response(j) for j in jobs])


@router.get("/jobs/{job_id}", response_model=JobResponse, responses=ERRORS)
async def get_job(job_id: str, request: Request, tenant: TenantDep) -> JobResponse:
    """Return one of the caller's jobs: its status, progress in chunks and each document's outcome."""
    job = await run_in_threadpool(_runner(request).store.get, job_id, tenant=tenant.name)
    return job_response(job)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobResponse,
    responses={202: {"model": JobResponse, "description": "Still stopping: poll it"}, **_CONFLICT, **ERRORS},
)
async def cancel_job(job_id: str, request: Request, tenant: TenantDep) -> JSONResponse:
    """Cancel a queued or running job; documents already stored stay, the one in flight is not written."""
    store = _runner(request).store
    job = await run_in_threadpool(store.cancel, job_id, tenant=tenant.name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_WAIT_SECONDS
    while job.status not in FINISHED and loop.time() < deadline:
        await asyncio.sleep(0.1)
        job = await run_in_threadpool(store.get, job_id, tenant=tenant.name)
    body = job_response(job)
    return JSONResponse(body.model_dump(), status_code=200 if job.status in FINISHED else 202)
