"""create_app(settings): the FastAPI application, its lifespan and its routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from api.deps import authenticate
from api.errors import install_error_handlers
from api.metrics import Metrics
from api.middleware import EdgeMiddleware
from api.routes import answers, chat, documents, evaluation, jobs, openai_compat, operations, page
from api.tenancy import LOCAL_TENANT, TenantRegistry
from index.jobs import JobRunner
from rag.config import Settings, get_settings
from rag.embedding import SentenceTransformerEmbedder
from rag.errors import StoreUnavailable
from rag.factory import build_embedder
from rag.jobs import JobStore

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, *, embedder: SentenceTransformerEmbedder | None = None) -> FastAPI:
    """Build the app; the model and the stores are opened in the lifespan and kept on app.state."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = embedder or build_embedder(settings, serving=True)
        await run_in_threadpool(model.load)
        registry = TenantRegistry(settings=settings, embedder=model, on_answer=[metrics.observe_answer])
        app.state.registry = registry
        app.state.settings = settings
        app.state.metrics = metrics
        if registry.keyring.enabled:
            log.info(
                "API keys configured for %d tenant(s); every route but /health needs one", len(registry.keyring.tenants)
            )
            names = registry.keyring.tenants
        else:
            log.warning("no API keys configured (RAG_API_KEYS): no authentication, serve on loopback only")
            names = [LOCAL_TENANT]
        store = settings.chroma_url or str(settings.data_dir)
        for name in names:
            tenant = await run_in_threadpool(registry.get, name)
            await run_in_threadpool(tenant.service.answerer.load)
            try:
                lexical = await run_in_threadpool(tenant.service.retriever.lexical)
                # A crash or a failed write may have left chunks without their record: the store is made whole
                # before the first request (every replica does this; each document is repaired under its lock).
                await run_in_threadpool(tenant.indexer.repair, lexical.snapshot)
                chunks = await run_in_threadpool(tenant.service.store.count_chunks)
                log.info("ready: tenant %s has %d chunks (store %s)", name, chunks, store)
            except StoreUnavailable:
                # Start anyway: /ready says 503 and requests get store_unavailable until the store is back.
                log.warning("store %s unreachable at start; will retry on each request", store)
        runner = JobRunner(
            store=JobStore(settings.jobs_path),
            indexer_for=lambda name: registry.get(name).indexer,
            workers=settings.job_workers,
            observer=metrics,
        )
        app.state.jobs = runner
        metrics.job_counts = runner.store.counts
        runner.start()
        try:
            yield
        finally:
            await run_in_threadpool(runner.stop)

    app = FastAPI(
        title="Cited answers",
        version="0.1.0",
        summary="Answers questions over your documents; every sentence cites the exact passage it came from.",
        lifespan=lifespan,
        # Every route authenticates (and is rate limited) except those in api.deps.PUBLIC_PATHS.
        dependencies=[Depends(authenticate)],
    )
    install_error_handlers(app)
    app.add_middleware(
        EdgeMiddleware, metrics=metrics, max_body=settings.max_body_bytes, allowed_origins=settings.origins()
    )
    app.include_router(answers.router)
    app.include_router(jobs.router)
    app.include_router(documents.router)
    app.include_router(operations.router)
    app.include_router(evaluation.router)
    app.include_router(chat.router)
    app.include_router(openai_compat.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
