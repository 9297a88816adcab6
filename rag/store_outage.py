"""What the store does when the Chroma server is down or hung: no call waits for it longer than a timeout, its
failures become StoreUnavailable (503 ``store_unavailable``), and a write it interrupted is finished once it answers.

Only rag/store.py uses this module; it imports no chromadb (the store hands it chromadb's client as a value).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rag.errors import StoreUnavailable

log = logging.getLogger("rag.store")

_R = TypeVar("_R")

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


class UnsettledWrites:
    """Writes an outage interrupted, replayed in order before the store is used again.

    A write is several requests (new chunks, the document records, deleting stale chunks, the generation). One that
    fails half-way leaves part of it in the store, and a request that timed out may still be committed by the server
    after the client gave up. Replaying the whole write is safe (every step is idempotent: ids derive from content)
    and leaves each of its documents exactly as written, so the document ends whole, never half-written; the caller
    still got 503 (the write is not reported done), and a retry then finds it unchanged. A later write of the same
    document waits for the replay, so the later one wins.

    The replay runs at the start of the next store call (read or write) once the server answers again. While it still
    does not, callers that waited for a failed replay fail at once rather than each trying again (a burst of requests
    during an outage costs one timeout, not one each). Kept in memory: a process that ends first leaves the half
    write to the store's own repair of orphan chunks.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._queue: deque[tuple[str, Callable[[], object]]] = deque()  # append/popleft are atomic
        self._lock = threading.Lock()  # one replay at a time
        self._local = threading.local()  # busy: this thread is inside a write or a replay
        self._failed_at = float("-inf")
        self._failure = UNANSWERED

    def __len__(self) -> int:
        return len(self._queue)

    def write(self, what: str, write: Callable[[], _R]) -> _R:
        """Run ``write`` after the writes still unsettled; if an outage interrupts it once it may have changed the
        store, queue it for replay (one that failed before sending a change stays undone: the caller's 503)."""
        if getattr(self._local, "busy", False):
            return write()
        self.settle()
        self._local.busy, self._local.changed = True, False
        try:
            return write()
        except StoreUnavailable:
            if self._local.changed:
                self._queue.append((what, write))
                log.warning("%s interrupted by a store outage: it is finished once the server answers", what)
            raise
        finally:
            self._local.busy = False

    def changing(self) -> None:
        """Note that the write running in this thread is about to send a change (see WatchedCollection)."""
        self._local.changed = True

    def settle(self) -> None:
        """Replay the interrupted writes, oldest first; StoreUnavailable if the server still does not answer."""
        if not self._queue or getattr(self._local, "busy", False):
            return
        asked = time.monotonic()
        # Bounded like every store call: a replay that cannot finish (a lock its write needs held by a caller that
        # waits here) turns into 503s, never into threads that wait for good.
        if not self._lock.acquire(timeout=self._timeout_s):
            raise StoreUnavailable("the vector store is still finishing a write an outage interrupted; retry shortly")
        self._local.busy = True
        try:
            if self._queue and self._failed_at >= asked:
                raise StoreUnavailable(self._failure)  # the replay this call waited for failed just now
            while self._queue:
                what, write = self._queue[0]
                try:
                    write()
                except StoreUnavailable as exc:
                    self._failed_at, self._failure = time.monotonic(), exc.message
                    raise
                except Exception:
                    self._queue.popleft()
                    log.exception("%s failed when replayed after a store outage; dropped", what)
                    raise
                self._queue.popleft()
                log.info("%s, interrupted by a store outage, is finished", what)
        finally:
            self._local.busy = False
            self._lock.release()


class WatchedCollection:
    """A chromadb collection that calls ``changing`` before each call that changes it, so that a write knows whether
    the server may have received part of it (UnsettledWrites.changing)."""

    _CHANGES = frozenset({"add", "upsert", "update", "delete", "modify"})

    def __init__(self, collection: Any, changing: Callable[[], None]) -> None:
        self._collection = collection
        self._changing = changing

    def __getattr__(self, name: str) -> Any:
        if name in self._CHANGES:
            self._changing()
        return getattr(self._collection, name)
