"""Operational routes: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import get_service
from api.schemas import Health, Ready
from rag.service import RAGService

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Report that the process is up."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
async def ready(service: RAGService = Depends(get_service)) -> JSONResponse:
    """Report whether the model is loaded and the index is non-empty (503 until both hold)."""
    chunks = await run_in_threadpool(service.store.count_chunks)
    documents = await run_in_threadpool(service.store.count_documents)
    body = Ready(
        ready=service.embedder.loaded and chunks > 0,
        model_loaded=service.embedder.loaded,
        chunks=chunks,
        documents=documents,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
