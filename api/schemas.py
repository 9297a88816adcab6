"""HTTP request and response bodies. Answers reuse rag.types.Answer unchanged (one Answer type)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from rag.config import MAX_QUESTION_CHARS, MAX_TOP_K
from rag.types import Answer

_SURROGATE = re.compile("[\ud800-\udfff]")


def find_lone_surrogate(value: Any) -> tuple[str, int, int] | None:
    """Find a lone UTF-16 surrogate in a parsed JSON value: (where, e.g. "messages.0.content"; character; code).

    JSON may spell one ("\\ud800"), and Python's decoder lets it through, but it is not text: encoding it as UTF-8
    (a log line, the tokenizer, SQLite, the response) fails. A surrogate in a key is reported at its object. The
    walk is iterative, so no nesting depth the decoder accepts can exhaust the stack here.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return where or "body", found.start(), ord(found.group())
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                found = _SURROGATE.search(key) if isinstance(key, str) else None
                if found:
                    return where or "body", -1, ord(found.group())
                children.append((f"{where}.{key}" if where else str(key), child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{where}.{i}" if where else str(i), child) for i, child in enumerate(item)]))
    return None


class RequestBody(BaseModel):
    """A JSON request body: a lone surrogate anywhere in it is refused (422) before any field is validated."""

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        found = find_lone_surrogate(data)
        if found is not None:
            where, at, code = found
            place = "a key" if at < 0 else f"character {at}"
            raise PydanticCustomError(
                "lone_surrogate",
                "{where}: holds a lone UTF-16 surrogate (\\u{code} at {place}), which is not text: send the "
                "character itself, or both halves of a surrogate pair",
                {"where": where, "code": f"{code:04x}", "place": place},
            )
        return data


class AskRequest(RequestBody):
    """A question for the index."""

    question: str = Field(
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        description=f"The question, 1 to {MAX_QUESTION_CHARS} characters, not only spaces.",
        examples=["Why did the VRAEM faction attack in February?"],
    )
    top_k: int | None = Field(
        None, ge=1, le=MAX_TOP_K, description=f"Passages to retrieve (1..{MAX_TOP_K}); the server default if omitted."
    )


class ChatRequest(RequestBody):
    """A chat message, in a new conversation or (with conversation_id) a follow-up in an existing one."""

    conversation_id: str | None = Field(
        None, max_length=64, description="The conversation to continue; omit it to start a new one."
    )
    message: str = Field(
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        description=f"The message, 1 to {MAX_QUESTION_CHARS} characters, not only spaces.",
        examples=["Who is Alipio?"],
    )
    top_k: int | None = Field(
        None, ge=1, le=MAX_TOP_K, description=f"Passages to retrieve (1..{MAX_TOP_K}); the server default if omitted."
    )
    stream: bool = Field(False, description="Stream the answer as server-sent events (text/event-stream).")


class ChatResponse(Answer):
    """The answer (the same fields as /ask) and the conversation it belongs to."""

    conversation_id: str = Field(description="Send it back with the next message to ask a follow-up.")


class DocumentSummary(BaseModel):
    """An indexed document, without its text."""

    doc_id: str
    source: str
    chunks: int = Field(description="Number of chunks stored for it.")
    content_hash: str = Field(description="SHA-256 of the normalised text.")
    title: str = ""


class DocumentPage(BaseModel):
    """Where one page of a PDF lies in the document's text."""

    page: int = Field(description="1-based page number.")
    start: int = Field(description="Offset of the page's first character in `text`.")
    end: int = Field(description="End offset (exclusive): text[start:end] is the page (empty for a page without text).")


class DocumentResponse(DocumentSummary):
    """An indexed document with its full normalised text: citation offsets index into `text`."""

    text: str
    pages: list[DocumentPage] = Field(
        default_factory=list,
        description="PDFs: each page's range in `text` (pages are joined by a blank line); empty for other types "
        "and for PDFs indexed before pages were kept.",
    )


class DocumentListResponse(BaseModel):
    """The caller's indexed documents, without their text."""

    documents: list[DocumentSummary]


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. invalid_question, index_empty.")
    message: str = Field(description="What went wrong and what to do about it.")


class ErrorResponse(BaseModel):
    """The one error body every route returns."""

    detail: ErrorDetail


class HealthResponse(BaseModel):
    """Liveness: the process is up."""

    status: str


class ReadyResponse(BaseModel):
    """Readiness: the model is loaded and the caller's index holds chunks."""

    ready: bool
    model_loaded: bool
    chunks: int
    documents: int
    store_available: bool = True
    reason: str | None = Field(None, description="Why the service is not ready (null when it is).")
    start_repair: str | None = Field(
        None,
        description="The start-up repair of the store (stray chunks of crashed writes, documents missing chunks, "
        "the BM25 index reconciled with the records), run after the replica is ready: running, done or failed.",
    )


MAX_DOC_ID_CHARS = 256


class DocumentRequest(RequestBody):
    """A document sent as JSON text (for files, send multipart/form-data with a `file` part instead)."""

    text: str = Field(min_length=1, description="The document's text; it is normalised once and stored.")
    doc_id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_DOC_ID_CHARS,
        description="Its id; defaults to `source`, else to the first 16 hex of the content hash. "
        "Sending new text for an existing id replaces that document.",
    )
    source: str | None = Field(
        None, max_length=1024, description="Where it came from (a path or URL), shown in citations."
    )
    title: str = Field("", max_length=1024)


class IngestResponse(BaseModel):
    """What storing a document did."""

    doc_id: str
    status: str = Field(description="added, updated (new content for an existing id) or unchanged (same content).")
    content_hash: str = Field(description="SHA-256 of the normalised text.")
    chunks: int = Field(description="Chunks stored for it.")
    source: str


class JobProgress(BaseModel):
    """How far a job is, in chunks embedded (a batch's total grows as its documents are chunked)."""

    done: int
    total: int
    unit: Literal["chunks"] = "chunks"


class JobDocumentStatus(BaseModel):
    """One document of a job."""

    doc_id: str
    status: str = Field(description="queued, running, added, updated, unchanged, failed or cancelled.")
    chunks: int
    error: str | None = None


class JobResponse(BaseModel):
    """An ingestion job's state."""

    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    status_url: str = Field(description="Where to poll this job: GET it.")
    progress: JobProgress
    documents: list[JobDocumentStatus]
    error: str | None = Field(None, description="Why it failed (failed jobs only).")
    created_at: float = Field(description="Unix time the job was accepted.")
    finished_at: float | None = Field(None, description="Unix time it ended (done, failed or cancelled).")


class JobListResponse(BaseModel):
    """The caller's jobs, newest first."""

    jobs: list[JobResponse]


class BatchRequest(BaseModel):
    """Several documents as JSON, indexed by one job (a bare JSON list of documents is taken too)."""

    documents: list[DocumentRequest] = Field(min_length=1, description="The documents, each as for POST /documents.")
