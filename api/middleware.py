"""The edge of every request: request id, cross-origin writes, body size limit, metrics and one access-log line.

A plain ASGI middleware (not BaseHTTPMiddleware) so it sees the body before any route reads it and costs little.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from api.errors import EdgeError, cross_origin, error_body, payload_too_large
from api.logs import request_id_var
from api.metrics import Metrics
from rag.config import normalize_origin

log = logging.getLogger("api.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Scope = dict[str, Any]

# Methods that change something: a browser may send them from another site's page (a form post needs no CORS).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sec-Fetch-Site values of a request that no other site's page made.
_OWN_FETCH_SITES = frozenset({b"same-origin", b"none"})


def cross_origin_refusal(method: str, headers: dict[bytes, bytes], allowed: frozenset[str]) -> EdgeError | None:
    """Refuse a browser's write from another origin; None to let the request through.

    A request with neither Origin nor Sec-Fetch-Site is not a browser's (curl, the openai client) and passes; the
    service's own pages send their own origin. Sec-Fetch-Site "same-site" is refused too: another port of the same
    host is another origin (any local dev server would otherwise count).
    """
    if method not in UNSAFE_METHODS:
        return None
    origin = headers.get(b"origin")
    site = headers.get(b"sec-fetch-site")
    advice = "to let pages of that origin write here, add it to RAG_ALLOWED_ORIGINS"
    if origin is None:
        if site is None or site in _OWN_FETCH_SITES:
            return None
        return cross_origin(
            f"cross-origin write refused: the browser marked this {method} as {site.decode('latin-1')} "
            f"(Sec-Fetch-Site) and it carries no Origin; {advice}"
        )
    sent = origin.decode("latin-1")
    normalised = normalize_origin(sent)
    if normalised is not None and (normalised in allowed or _is_own(normalised, headers.get(b"host"))):
        return None
    return cross_origin(
        f"cross-origin write refused: a page at {sent[:100]} may not {method} here, only this service's own pages "
        f"and clients that are not browsers; {advice}"
    )


def _is_own(origin: str, host: bytes | None) -> bool:
    """Whether ``origin`` names the host the request was sent to (its Host header; the scheme may differ behind a
    TLS-terminating proxy)."""
    if host is None:
        return False
    own = normalize_origin(origin.split("://", 1)[0] + "://" + host.decode("latin-1"))
    return own is not None and own.split("://", 1)[1] == origin.split("://", 1)[1]


class EdgeMiddleware:
    """Give each request an id (echoed in X-Request-ID), refuse browsers' writes from other origins (but
    ``allowed_origins``) and bodies over ``max_body`` bytes, and measure."""

    def __init__(
        self, app: Any, *, metrics: Metrics, max_body: int, allowed_origins: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = offered if _VALID_REQUEST_ID.match(offered) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            # Before the body is read: a refused upload costs nothing.
            refusal = cross_origin_refusal(scope.get("method", ""), headers, self.allowed_origins)
            body_receive = None if refusal else await self._bounded_body(headers, receive)
            if refusal is not None:
                await self._send_error(send_with_id, refusal)
            elif body_receive is None:
                await self._send_error(send_with_id, payload_too_large(self.max_body))
            else:
                await self.app(scope, body_receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.observe_request(method=method, route=route, status=status, seconds=seconds)
            state = scope.get("state") or {}
            log.info(
                "%s %s %d %.1fms",
                method,
                route,
                status,
                seconds * 1000,
                extra={
                    "request_id": request_id,
                    "fields": {
                        "event": "request",
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": round(seconds * 1000, 1),
                        "tenant": state.get("tenant"),
                    },
                },
            )
            request_id_var.reset(token)

    async def _bounded_body(self, headers: dict[bytes, bytes], receive: Any) -> Any | None:
        """Read the whole body if it fits (returning a receive that replays it), else None."""
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away; hand the disconnect to the app as it would have seen it.
                return _replaying(message)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _send_error(self, send: Any, error: EdgeError) -> None:
        # Sent from here, not raised: the request is refused before the app (and its exception handlers) runs.
        payload = json.dumps(error_body(error.code, error.message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replaying(message: dict[str, Any]) -> Any:
    async def receive() -> dict[str, Any]:
        return message

    return receive
