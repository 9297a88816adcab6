"""create_app(settings): the FastAPI application, its lifespan and its routers."""

from __future__ import annotations

import logging
import threading
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
from api.tenancy import LOCAL_TENANT, Tenant, TenantRegistry
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
                log.info("ready: tenant %s has %d chunks (store %s)", name, lexical.size, store)
            except StoreUnavailable:
                # Start anyway: /ready says 503 and requests get store_unavailable until the store is back.
                log.warning("store %s unreachable at start; will retry on each request", store)
            # The BM25 index follows the change log from now on; the store is made whole in the background.
            tenant.service.retriever.side.start()
            _start_housekeeping(tenant)
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
            for tenant in registry.opened():
                await run_in_threadpool(tenant.service.retriever.side.stop)

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


def _start_housekeeping(tenant: Tenant) -> None:
    """Repair the store and reconcile the BM25 index with the document records, in a thread of its own.

    A crash or a failed write may have left chunks without their record (no reader sees them: retrieval keeps only
    chunks whose content hash matches their record, so this can wait) or a document written without its change-log
    entry (``LexicalSide.reconcile`` finds it). Both read the whole collection or its records, O(collection), so they
    run after the replica is ready rather than before: a restart over 10^5 chunks is ready in seconds.
    """

    def run() -> None:
        tenant.service.start_repair = "running"
        try:
            tenant.indexer.repair()
            tenant.service.retriever.side.reconcile()
            tenant.service.start_repair = "done"
        except StoreUnavailable:
            tenant.service.start_repair = "failed"
            log.warning(
                "tenant %s: the store is unreachable; its repair waits for the next start or rag index", tenant.name
            )
        except Exception:
            tenant.service.start_repair = "failed"
            log.exception("tenant %s: the start-up repair failed", tenant.name)

    threading.Thread(target=run, name=f"housekeeping-{tenant.name}", daemon=True).start()
