"""Map domain errors and request validation failures to the one error body, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import IndexEmpty, InvalidInput, NotFound, RAGError, StoreUnavailable

STATUS: list[tuple[type[RAGError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (IndexEmpty, 503),
    (StoreUnavailable, 503),
]


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"detail": {"code": code, "message": message}}


def status_of(exc: RAGError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as {"detail": {"code", "message"}}."""

    @app.exception_handler(RAGError)
    async def _rag_error(_: Request, exc: RAGError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _describe(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            parts.append('the body is not valid JSON: send a JSON object such as {"question": "..."}')
        elif err.get("type") == "missing":
            parts.append(f"{loc}: field required")
        else:
            parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"
