"""The edge of every request: request id, body size limit, metrics and one access-log line.

A plain ASGI middleware (not BaseHTTPMiddleware) so it sees the body before any route reads it and costs little.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from api.errors import error_body, payload_too_large
from api.logs import request_id_var
from api.metrics import Metrics

log = logging.getLogger("api.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Scope = dict[str, Any]


class EdgeMiddleware:
    """Give each request an id (echoed in X-Request-ID), refuse bodies over ``max_body`` bytes, and measure."""

    def __init__(self, app: Any, *, metrics: Metrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

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
            body_receive = await self._bounded_body(headers, receive)
            if body_receive is None:
                await self._send_413(send_with_id)
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

    async def _send_413(self, send: Any) -> None:
        # Sent from here, not raised: the body is refused before the app (and its exception handlers) runs.
        error = payload_too_large(self.max_body)
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
