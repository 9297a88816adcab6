"""The chat page: plain HTML, CSS and JS shipped in api/static (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(tags=["page"])

INDEX = Path(__file__).resolve().parent.parent / "static" / "index.html"


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """Serve the chat page."""
    return FileResponse(INDEX, media_type="text/html")
