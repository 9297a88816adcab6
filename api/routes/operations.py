"""Operational routes: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.deps import ERRORS, ServiceDep
from api.schemas import HealthResponse, ReadyResponse
from rag.errors import StoreUnavailable

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """Report that the process is up."""
    return HealthResponse(status="ok")


@router.get("/ready", response_model=ReadyResponse, responses={**ERRORS, 503: {"model": ReadyResponse}})
async def ready(service: ServiceDep) -> JSONResponse:
    """Report whether the model is loaded and the caller's index is non-empty (503 until both hold)."""
    try:
        chunks = await run_in_threadpool(service.store.count_chunks)
        documents = await run_in_threadpool(service.store.count_documents)
    except StoreUnavailable as exc:
        body = ReadyResponse(
            ready=False,
            model_loaded=service.embedder.loaded,
            chunks=0,
            documents=0,
            store_available=False,
            reason=exc.message,
        )
        return JSONResponse(body.model_dump(), status_code=503)
    reason = None
    if not service.embedder.loaded:
        reason = "the embedding model is not loaded yet"
    elif chunks == 0:
        reason = "the index is empty: index some documents (rag index PATH or POST /documents)"
    body = ReadyResponse(
        ready=reason is None,
        model_loaded=service.embedder.loaded,
        chunks=chunks,
        documents=documents,
        reason=reason,
        start_repair=service.start_repair,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **ERRORS},
)
async def metrics(request: Request) -> Response:
    """Report Prometheus metrics: requests and latency per route and status, ingestion and answer-quality counters."""
    metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
