"""create_app(settings): the FastAPI application, its lifespan and its routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api.errors import install_error_handlers
from api.routes import answers, documents, operations
from rag.config import Settings, get_settings
from rag.embedding import SentenceTransformerEmbedder
from rag.service import RAGService

log = logging.getLogger(__name__)


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
    app.include_router(answers.router)
    app.include_router(documents.router)
    app.include_router(operations.router)
    return app
