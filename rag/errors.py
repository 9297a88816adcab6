"""Domain errors. Each carries a machine-readable ``code``; the API maps codes to HTTP statuses in one place.

RAGError
 ├── InvalidInput          code=invalid_input (subclasses refine the code)
 │    ├── InvalidQuestion  code=invalid_question
 │    ├── UnsupportedFile  code=unsupported_file
 │    ├── InvalidMessage   code=invalid_message (a chat message or message list that cannot be answered)
 │    └── DocumentTooLarge code=document_too_large (over a per-document cap: characters or chunks)
 ├── NotFound              code=not_found
 │    ├── DocumentNotFound code=document_not_found
 │    ├── ConversationNotFound code=conversation_not_found
 │    └── JobNotFound      code=job_not_found
 ├── JobFinished           code=job_finished (a finished job cannot be cancelled)
 ├── JobsUnavailable       code=jobs_unavailable (the jobs database cannot be used)
 ├── IndexEmpty            code=index_empty
 ├── DocumentBusy          code=document_busy (another write of the same document holds its lock too long)
 ├── StoreUnavailable      code=store_unavailable
 ├── ConversationsUnavailable code=conversations_unavailable (the conversations database cannot be used)
 └── LLMUnavailable        code=llm_unavailable (never reaches a client: a generated answer falls back)
"""

from __future__ import annotations


class RAGError(Exception):
    """Base of every error the core raises on purpose."""

    code = "rag_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(RAGError):
    code = "invalid_input"


class InvalidQuestion(InvalidInput):
    code = "invalid_question"


class UnsupportedFile(InvalidInput):
    code = "unsupported_file"


class InvalidMessage(InvalidInput):
    code = "invalid_message"


class DocumentTooLarge(InvalidInput):
    """A document over a per-document cap (its characters or its chunks); the message names the setting."""

    code = "document_too_large"


class NotFound(RAGError):
    code = "not_found"


class DocumentNotFound(NotFound):
    code = "document_not_found"


class IndexEmpty(RAGError):
    code = "index_empty"


class DocumentBusy(RAGError):
    """Another write or delete of the same document held its lock for longer than a writer waits."""

    code = "document_busy"


class StoreUnavailable(RAGError):
    code = "store_unavailable"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class ConversationsUnavailable(RAGError):
    """The conversations database cannot be opened or used (not SQLite, tables of another shape); chat only."""

    code = "conversations_unavailable"


class LLMUnavailable(RAGError):
    """The language model server is down, too slow, or answered with something unusable."""

    code = "llm_unavailable"


class JobNotFound(NotFound):
    code = "job_not_found"


class JobFinished(RAGError):
    """A job that is already done, failed or cancelled was asked to be cancelled."""

    code = "job_finished"


class JobsUnavailable(RAGError):
    """The jobs database cannot be opened or used; synchronous uploads and every other route still work."""

    code = "jobs_unavailable"
