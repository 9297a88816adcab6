"""Map domain errors and request validation failures to the one error body, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from api.disconnects import ClientGone
from rag.errors import (
    ConversationsUnavailable,
    DocumentBusy,
    DocumentTooLarge,
    IndexEmpty,
    InvalidInput,
    JobFinished,
    JobsUnavailable,
    NotFound,
    RAGError,
    StoreUnavailable,
    UnsupportedFile,
)

# What a JSON body nested past the decoder's depth gets (the decoder's recursion limit, about a thousand levels).
NESTED_TOO_DEEP = "the body's JSON is nested too deeply to read (about a thousand levels or more): send a flat object"
# nginx's code for "the client closed the request": logged and counted, never received by anyone.
CLIENT_GONE = 499


class EdgeError(Exception):
    """An error decided at the HTTP edge (auth, limits, media types), in the same body as the domain errors.

    code -> status: unauthorized 401, forbidden 403, cross_origin 403, payload_too_large 413,
    unsupported_media_type 415, rate_limited 429. (Domain errors map through STATUS below: document_too_large is 413
    as well.)
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def unauthorized(message: str) -> EdgeError:
    """Refuse a request without a valid API key (401, with a Bearer challenge)."""
    return EdgeError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> EdgeError:
    """Refuse a request that reaches for another tenant (403)."""
    return EdgeError(403, "forbidden", message)


def cross_origin(message: str) -> EdgeError:
    """Refuse a browser's write sent from another site's page (403); EdgeMiddleware sends it."""
    return EdgeError(403, "cross_origin", message)


def payload_too_large(limit: int) -> EdgeError:
    """Refuse a request body over ``limit`` bytes (413); EdgeMiddleware sends it."""
    return EdgeError(413, "payload_too_large", f"the request body is over {limit} bytes: send a smaller one")


def unsupported_media_type(message: str) -> EdgeError:
    """Refuse a body of a media type or file type the route does not take (415)."""
    return EdgeError(415, "unsupported_media_type", message)


def rate_limited(retry_after: str) -> EdgeError:
    """Refuse a request over its key's rate limit (429, with Retry-After in seconds)."""
    return EdgeError(
        429,
        "rate_limited",
        f"too many requests for this key: retry after {retry_after} s",
        {"Retry-After": retry_after},
    )


def too_many_failures(retry_after: str) -> EdgeError:
    """Refuse every key from an address that sent too many unknown ones (429, with Retry-After in seconds)."""
    return EdgeError(
        429,
        "rate_limited",
        f"too many failed authentications (unknown API keys) from this address: check the key and retry after "
        f"{retry_after} s",
        {"Retry-After": retry_after},
    )


STATUS: list[tuple[type[RAGError], int]] = [
    (UnsupportedFile, 415),
    (DocumentTooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (DocumentBusy, 409),
    (IndexEmpty, 503),
    (StoreUnavailable, 503),
    (ConversationsUnavailable, 503),
    (JobFinished, 409),
    (JobsUnavailable, 503),
]


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """Build the one error body, {"detail": {"code", "message"}}."""
    return {"detail": {"code": code, "message": message}}


def status_of(exc: RAGError) -> int:
    """Return the HTTP status of a domain error (500 for one not in STATUS)."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Make every error leave as {"detail": {"code", "message"}}."""

    @app.exception_handler(EdgeError)
    async def _edge_error(_: Request, exc: EdgeError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RAGError)
    async def _rag_error(_: Request, exc: RAGError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _describe(exc)), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback and re-raises after this; the client still gets the one error body.
        return JSONResponse(
            error_body("internal_error", "the server failed on this request; it has been logged"), status_code=500
        )

    async def _client_gone(_: Request, exc: Exception) -> JSONResponse:
        # The client hung up before its body arrived (nothing was done), or before its answer was ready (the work
        # stopped): nobody will read this.
        return JSONResponse(error_body("client_closed_request", "the client went away"), status_code=CLIENT_GONE)

    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(ClientGone, _client_gone)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "There was an error parsing the body" (its JSON decoder's own failures) says what instead.
            cause = exc.__cause__
            if isinstance(cause, ClientDisconnect):
                return await _client_gone(request, cause)
            if isinstance(cause, RecursionError):
                return JSONResponse(error_body("invalid_request", NESTED_TOO_DEEP), status_code=422)
            if isinstance(cause, UnicodeDecodeError):
                message = f"the body is not valid UTF-8 (byte {cause.start}): send JSON encoded as UTF-8"
                return JSONResponse(error_body("invalid_request", message), status_code=422)
        code = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
            429: "rate_limited",
        }.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "lone_surrogate":
            parts.append(msg)  # it names its own place, e.g. "messages.0.content: ..."
        elif err.get("type") == "json_invalid":
            parts.append('the body is not valid JSON: send a JSON object such as {"question": "..."}')
        elif err.get("type") == "missing":
            parts.append(f"{loc}: field required")
        else:
            parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"
