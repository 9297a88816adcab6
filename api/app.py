"""create_app(settings): the FastAPI application, its lifespan and its routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from api.errors import install_error_handlers
from api.schemas import (
    AskRequest,
    DocumentDetail,
    DocumentList,
    DocumentSummary,
    ErrorResponse,
    Health,
    Ready,
)
from rag.config import Settings, get_settings
from rag.embedding import SentenceTransformerEmbedder
from rag.service import RAGService
from rag.types import Answer

log = logging.getLogger(__name__)

ERRORS = {
    404: {"model": ErrorResponse, "description": "Unknown document"},
    422: {"model": ErrorResponse, "description": "Invalid request; the message says what to fix"},
    503: {"model": ErrorResponse, "description": "Index empty (index_empty) or store unavailable"},
}


def create_app(settings: Settings | None = None, *, embedder: SentenceTransformerEmbedder | None = None) -> FastAPI:
    """Build the app; the model and the store are opened in the lifespan and kept on app.state."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = RAGService.from_settings(settings, embedder=embedder)
        await run_in_threadpool(service.embedder.load)
        await run_in_threadpool(service.retriever.lexical)
        app.state.service = service
        app.state.settings = settings
        log.info("ready: %d chunks in collection %r", service.store.count_chunks(), settings.collection)
        yield

    app = FastAPI(
        title="Cited answers",
        version="0.1.0",
        summary="Answers questions over your documents; every sentence cites the exact passage it came from.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.post("/ask", response_model=Answer, responses=ERRORS, tags=["answers"])
    async def ask(body: AskRequest, request: Request) -> Answer:
        """Answer a question with cited sentences from the indexed documents."""
        service: RAGService = request.app.state.service
        return await run_in_threadpool(service.ask, body.question, top_k=body.top_k)

    @app.get("/documents", response_model=DocumentList, tags=["documents"])
    async def list_documents(request: Request) -> DocumentList:
        """List the indexed documents (id, source, chunk count, content hash)."""
        service: RAGService = request.app.state.service
        infos = await run_in_threadpool(service.list_documents)
        return DocumentList(
            documents=[
                DocumentSummary(
                    doc_id=i.doc_id, source=i.source, chunks=i.chunks, content_hash=i.content_hash, title=i.title
                )
                for i in infos
            ]
        )

    @app.get("/documents/{doc_id:path}", response_model=DocumentDetail, responses=ERRORS, tags=["documents"])
    async def get_document(doc_id: str, request: Request) -> DocumentDetail:
        """Return one document with its full normalised text, so citation offsets can be highlighted."""
        service: RAGService = request.app.state.service
        info = await run_in_threadpool(service.get_document, doc_id)
        return DocumentDetail(
            doc_id=info.doc_id,
            source=info.source,
            chunks=info.chunks,
            content_hash=info.content_hash,
            title=info.title,
            text=info.text or "",
        )

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        """Report that the process is up."""
        return Health(status="ok")

    @app.get("/ready", response_model=Ready, responses={503: {"model": Ready}}, tags=["operations"])
    async def ready(request: Request):  # type: ignore[no-untyped-def]
        """Report whether the model is loaded and the index is non-empty (503 until both hold)."""
        from fastapi.responses import JSONResponse

        service: RAGService = request.app.state.service
        chunks = await run_in_threadpool(service.store.count_chunks)
        body = Ready(
            ready=service.embedder.loaded and chunks > 0,
            model_loaded=service.embedder.loaded,
            chunks=chunks,
            documents=await run_in_threadpool(service.store.count_documents),
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    return app
