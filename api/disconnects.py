"""Stop reading-only work whose client has gone: an answer nobody will receive is not worth a model's minute.

Writes are not stopped this way (an upload within the caps is stored even if its client has gone): only routes that
change nothing use it (/ask, /v1/chat/completions, /eval).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import anyio
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from rag.types import Answer

T = TypeVar("T")
Gone = Callable[[], bool]


class ClientGone(Exception):
    """The client disconnected before its answer was ready; the work stopped (answered 499, read by nobody)."""


async def while_connected(request: Request, work: Callable[[Gone], T]) -> T:
    """Run ``work(gone)`` in the threadpool while watching the connection; ``gone()`` is True once the client left.

    Work checks ``gone()`` between its steps and raises ClientGone (``check``); a request that waited in the queue
    behind others starts only if its client is still there.
    """
    left = threading.Event()

    async def watch() -> None:
        # The body is read by now, so the next message of this request is its disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left.set()

    results: list[T] = []
    errors: list[Exception] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        try:
            results.append(await run_in_threadpool(work, left.is_set))
        except Exception as exc:  # raised below, outside the task group, which would wrap it in an ExceptionGroup
            errors.append(exc)
        tasks.cancel_scope.cancel()
    if errors:
        raise errors[0]
    return results[0]


def check(gone: Gone) -> None:
    """Raise ClientGone if the client has left."""
    if gone():
        raise ClientGone


def final_answer(events: Iterator[str | Answer], gone: Gone) -> Answer:
    """The Answer at the end of an answer stream, stopping once the client has left.

    Pass ``RAGService.ask_stream(..., checkpoint=lambda: check(gone))``: a generated answer streams from the model,
    which then stops at its next token instead of writing a whole answer nobody will get.
    """
    try:
        check(gone)
        for event in events:
            if isinstance(event, Answer):
                return event
            check(gone)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    raise RuntimeError("an answer stream ended without its Answer")
