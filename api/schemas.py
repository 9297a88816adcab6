"""HTTP request and response bodies. Answers reuse rag.types.Answer unchanged (one Answer type)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from rag.config import MAX_QUESTION_CHARS, MAX_TOP_K
from rag.types import Answer


class AskRequest(BaseModel):
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


class ChatRequest(BaseModel):
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


class DocumentResponse(DocumentSummary):
    """An indexed document with its full normalised text: citation offsets index into `text`."""

    text: str


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


MAX_DOC_ID_CHARS = 256


class DocumentRequest(BaseModel):
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
