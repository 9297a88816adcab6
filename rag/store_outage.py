"""What the store does when the Chroma server is down or hung: no call waits for it longer than a timeout, and its
failures become StoreUnavailable (503 ``store_unavailable``).

Only rag/store.py uses this module; it imports no chromadb (the store hands it chromadb's client as a value).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rag.errors import StoreUnavailable

log = logging.getLogger("rag.store")

UNREACHABLE = "the vector store (Chroma server) is unreachable; retry shortly, the service reconnects by itself"
UNANSWERED = (
    "the vector store (Chroma server) did not answer in time (RAG_CHROMA_TIMEOUT_S); retry shortly, "
    "the service reconnects by itself"
)


@contextmanager
def translate_errors(on_failure: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn 'the Chroma server is not there' or 'it did not answer in time' into StoreUnavailable; let everything
    else propagate."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        if on_failure is not None:
            on_failure()
        if is_timeout(exc):
            log.warning("vector store did not answer in time: %s", type(exc).__name__)
            raise StoreUnavailable(UNANSWERED) from exc
        log.warning("vector store unreachable: %s", type(exc).__name__)
        raise StoreUnavailable(UNREACHABLE) from exc


def is_connection_error(exc: BaseException) -> bool:
    """True for the ways a lost or refused connection to the Chroma server surfaces (httpx, OS, chromadb)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        name = type(current).__name__
        if name in {
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
            "WriteTimeout",
            "PoolTimeout",
            "RemoteProtocolError",
            "ReadError",
            "WriteError",
            "NetworkError",
        }:
            return True
        text = str(current).lower()
        if "could not connect" in text or "connection refused" in text or "connection reset" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def is_timeout(exc: BaseException) -> bool:
    """True when the failure is a request that got no answer in time (httpx's *Timeout, or our connect wait)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or type(current).__name__.endswith("Timeout"):
            return True
        current = current.__cause__ or current.__context__
    return False


def bound_requests(client: Any, seconds: float) -> None:
    """Give every request of chromadb's HTTP client a timeout: to connect, to send, and for each read.

    chromadb (1.5) builds its session as ``httpx.Client(timeout=None)`` (chromadb/api/fastapi.py) and its Settings
    hold no client-side timeout, so without this a stopped server holds a call, and its worker thread, for good.
    The admin client it builds beside the main one (tenant and database checks) gets the same.
    """
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        raise RuntimeError(
            "this chromadb version's HttpClient keeps no httpx session at _server._session, so its requests cannot "
            "be given a timeout: install the chromadb of requirements.lock, or adapt rag/store_outage.py"
        )
    session.timeout = httpx.Timeout(seconds)
    admin = getattr(getattr(getattr(client, "_admin_client", None), "_server", None), "_session", None)
    if isinstance(admin, httpx.Client):
        admin.timeout = httpx.Timeout(seconds)


@dataclass
class Connecting:
    """One attempt to connect to the Chroma server, run in a thread of its own (see ChromaStore._connect)."""

    done: threading.Event = field(default_factory=threading.Event)
    opened: tuple[Any, Any, Any, int] | None = None
    error: BaseException | None = None
