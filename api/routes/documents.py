"""Document routes: add (JSON text or a file upload), list, read and delete the caller's documents."""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.deps import ERRORS, ServiceDep, TenantDep
from api.errors import NESTED_TOO_DEEP, unsupported_media_type
from api.jobs import submit, wants_async
from api.schemas import (
    MAX_DOC_ID_CHARS,
    DocumentListResponse,
    DocumentPage,
    DocumentRequest,
    DocumentResponse,
    DocumentSummary,
    IngestResponse,
    JobResponse,
)
from index.loaders import SUPPORTED, LoadError, check_size, document_from_bytes
from rag.errors import InvalidInput
from rag.types import Document, page_ranges

router = APIRouter(tags=["documents"])

_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,
    "properties": {
        "file": {"type": "string", "format": "binary", "description": f"One file: {', '.join(sorted(SUPPORTED))}"},
        "doc_id": {"type": "string", "description": "Its id; defaults to the file's name."},
        "source": {"type": "string", "description": "Shown in citations; defaults to the file's name."},
    },
}
# A write or delete waits for another one of the same document; 409 only if that one holds it too long.
_BUSY: dict[int | str, dict[str, Any]] = {
    409: {"model": ERRORS[422]["model"], "description": "Another write of this document is in progress; retry"}
}
_ADD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            # Inlined: no route declares DocumentRequest as its body, so it is not among the schema's components
            # (a $ref to it dangled, and schemathesis skipped JSON uploads).
            "application/json": {"schema": DocumentRequest.model_json_schema()},
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
        },
    }
}


@router.post(
    "/documents",
    response_model=IngestResponse,
    status_code=201,
    responses={
        200: {"model": IngestResponse, "description": "Updated, or unchanged (the same content was there)"},
        202: {
            "model": JobResponse,
            "description": "Queued as a job (a body over RAG_SYNC_UPLOAD_BYTES, or 'Prefer: respond-async'): "
            "poll the Location header's URL",
        },
        415: {"model": ERRORS[422]["model"], "description": "Not JSON or multipart, or an unsupported file type"},
        **_BUSY,
        **ERRORS,
        413: {
            "model": ERRORS[413]["model"],
            "description": "Body over RAG_MAX_BODY_BYTES (payload_too_large), or a document over "
            "RAG_MAX_DOCUMENT_CHARS or RAG_MAX_CHUNKS_PER_DOCUMENT (document_too_large)",
        },
    },
    openapi_extra=_ADD_BODY,
)
async def add_document(request: Request, tenant: TenantDep) -> JSONResponse:
    """Add or replace a document from JSON text or an uploaded file; the same content again changes nothing.

    A body over RAG_SYNC_UPLOAD_BYTES, or a request with 'Prefer: respond-async', is validated, stored as a job and
    answered 202 with the job and a Location header to poll; bad input is still refused at once.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Uploads are bounded by the caps, not by the client: once read, a document within them is stored even if its
    # client has gone (a write that must complete), and one over them costs a few seconds at most.
    max_chars = tenant.indexer.max_document_chars
    if content_type == "application/json":
        document = await _document_from_json(request, max_chars=max_chars)
    elif content_type == "multipart/form-data":
        document = await _document_from_upload(request, max_chars=max_chars)
    else:
        raise unsupported_media_type("send application/json {\"text\": ...} or multipart/form-data with a 'file' part")
    if wants_async(request) or _body_size(request, document) > request.app.state.settings.sync_upload_bytes:
        return await submit(request, tenant, [document])  # validated above: only the indexing is deferred
    result = await run_in_threadpool(tenant.indexer.ingest, document)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_ingest(tenant.name, result.status, result.chunks)
    body = IngestResponse(
        doc_id=result.doc_id,
        status=result.status,
        content_hash=result.content_hash,
        chunks=result.chunks,
        source=document.source,
    )
    return JSONResponse(body.model_dump(), status_code=201 if result.status == "added" else 200)


async def _document_from_json(request: Request, *, max_chars: int | None) -> Document:
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput('the body is not valid JSON: send {"text": "...", "doc_id"?: "..."}') from exc
    except RecursionError as exc:
        raise InvalidInput(NESTED_TOO_DEEP) from exc
    try:
        req = DocumentRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc)) from exc
    return document_from_request(req, max_chars=max_chars)


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one message naming each field at fault."""
    return "; ".join(
        e["msg"] if e["type"] == "lone_surrogate" else f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


def document_from_request(req: DocumentRequest, *, max_chars: int | None) -> Document:
    """The Document a JSON document request describes (InvalidInput if it has no text or a bad id)."""
    document = check_size(
        Document.from_text(doc_id="", source="", text=req.text, title=req.title), name="text", max_chars=max_chars
    )
    if not document.text:
        raise InvalidInput("text: the document has no text once whitespace is normalised")
    # Without a doc_id or source, the id is derived from the content (the same text gets the same id).
    doc_id = _check_doc_id(req.doc_id or req.source or document.content_hash[:16])
    return dataclasses.replace(document, doc_id=doc_id, source=req.source or doc_id)


async def _document_from_upload(request: Request, *, max_chars: int | None) -> Document:
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("file: send the document as a multipart part named 'file' (with a filename)")
        name = Path(upload.filename or "").name
        check_suffix(name)
        data = await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()
    return await document_from_file(
        name, data, doc_id=fields.get("doc_id") or name, source=fields.get("source") or name, max_chars=max_chars
    )


def check_suffix(name: str) -> None:
    """415 for a file name of a type the loaders do not read."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise unsupported_media_type(
            f"unsupported file type {suffix or '(no extension)'}: send one of {', '.join(sorted(SUPPORTED))}"
        )


async def document_from_file(name: str, data: bytes, *, doc_id: str, source: str, max_chars: int | None) -> Document:
    """Decode an uploaded file into a Document (InvalidInput, naming what is wrong, if it cannot be read)."""
    doc_id = _check_doc_id(doc_id)
    try:
        return await run_in_threadpool(
            document_from_bytes, name, data, doc_id=doc_id, source=source, max_chars=max_chars
        )
    except LoadError as exc:
        raise InvalidInput(str(exc)) from exc


def _body_size(request: Request, document: Document) -> int:
    """The request body's size: its Content-Length, else (a chunked body) the document's text in UTF-8."""
    length = request.headers.get("content-length", "")
    return int(length) if length.isdigit() else len(document.text.encode())


def _check_doc_id(doc_id: str) -> str:
    if not doc_id or len(doc_id) > MAX_DOC_ID_CHARS or doc_id != doc_id.strip():
        raise InvalidInput(f"doc_id must be 1-{MAX_DOC_ID_CHARS} characters without leading or trailing spaces")
    if any(unicodedata.category(ch).startswith("C") for ch in doc_id):
        raise InvalidInput("doc_id must not contain control characters")
    return doc_id


@router.get("/documents", response_model=DocumentListResponse, responses=ERRORS)
async def list_documents(service: ServiceDep) -> DocumentListResponse:
    """List the caller's indexed documents (id, source, chunk count, content hash)."""
    infos = await run_in_threadpool(service.list_documents)
    return DocumentListResponse(
        documents=[
            DocumentSummary(
                doc_id=i.doc_id, source=i.source, chunks=i.chunks, content_hash=i.content_hash, title=i.title
            )
            for i in infos
        ]
    )


@router.get("/documents/{doc_id:path}", response_model=DocumentResponse, responses=ERRORS)
async def get_document(doc_id: str, service: ServiceDep) -> DocumentResponse:
    """Return one document with its full normalised text, so citation offsets can be highlighted."""
    info = await run_in_threadpool(service.get_document, doc_id)
    return DocumentResponse(
        doc_id=info.doc_id,
        source=info.source,
        chunks=info.chunks,
        content_hash=info.content_hash,
        title=info.title,
        text=info.text or "",
        pages=[
            DocumentPage(page=page, start=start, end=end)
            for page, start, end in page_ranges(info.text or "", info.page_starts)
        ],
    )


@router.delete("/documents/{doc_id:path}", status_code=204, responses={**_BUSY, **ERRORS})
async def delete_document(doc_id: str, request: Request, tenant: TenantDep) -> Response:
    """Delete one document and all its chunks (404 if the caller has no such document)."""
    await run_in_threadpool(tenant.service.delete_document, doc_id)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_ingest(tenant.name, "deleted")
    return Response(status_code=204)
