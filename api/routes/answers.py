"""Question answering routes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import ERRORS, ServiceDep
from api.schemas import AskRequest
from rag.types import Answer

router = APIRouter(tags=["answers"])


@router.post("/ask", response_model=Answer, responses=ERRORS)
async def ask(body: AskRequest, service: ServiceDep) -> Answer:
    """Answer a question with cited sentences from the indexed documents."""
    return await run_in_threadpool(service.ask, body.question, top_k=body.top_k)
