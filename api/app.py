"""create_app(settings): the FastAPI application, its lifespan and its routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from api.errors import install_error_handlers
from api.routes import answers, chat, documents, evaluation, openai_compat, operations, page
from rag.config import Settings, get_settings
from rag.conversation import ChatService, ConversationStore
from rag.embedding import SentenceTransformerEmbedder
from rag.service import RAGService

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, *, embedder: SentenceTransformerEmbedder | None = None) -> FastAPI:
    """Build the app; the model and the store are opened in the lifespan and kept on app.state."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = RAGService.from_settings(settings, embedder=embedder)
        await run_in_threadpool(service.embedder.load)
        await run_in_threadpool(service.retriever.lexical)
        app.state.service = service
        # Tenant = collection for now; multi-tenancy will pass the API key's tenant here instead.
        app.state.chat = ChatService(
            service=service, conversations=ConversationStore(settings.conversation_path), tenant=settings.collection
        )
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
    app.include_router(evaluation.router)
    app.include_router(chat.router)
    app.include_router(openai_compat.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
