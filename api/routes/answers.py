"""Question answering routes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ERRORS, ServiceDep
from api.disconnects import Gone, check, final_answer, while_connected
from api.schemas import AskRequest
from rag.types import Answer

router = APIRouter(tags=["answers"])


@router.post("/ask", response_model=Answer, responses=ERRORS)
async def ask(body: AskRequest, service: ServiceDep, request: Request) -> Answer:
    """Answer a question with cited sentences from the indexed documents."""

    def answer(gone: Gone) -> Answer:
        check(gone)
        events = service.ask_stream(body.question, top_k=body.top_k, checkpoint=lambda: check(gone))
        return final_answer(events, gone)

    return await while_connected(request, answer)
