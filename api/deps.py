"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from api.schemas import ErrorResponse
from rag.service import RAGService

ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "Unknown document or conversation"},
    422: {"model": ErrorResponse, "description": "Invalid request; the message says what to fix"},
    503: {"model": ErrorResponse, "description": "Index empty (index_empty) or store unavailable"},
}


def get_service(request: Request) -> RAGService:
    """The service built in the lifespan."""
    service: RAGService = request.app.state.service
    return service
