"""What the store does when the Chroma server is down or hung: no call waits for it longer than a timeout, its
failures become StoreUnavailable (503 ``store_unavailable``), and a write it interrupted is repaired once it answers.

Only rag/store.py uses this module; it imports no chromadb (the store hands it chromadb's client as a value).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
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
# A document whose repair found another writer holding it is tried again after this long (that write, if it ends
# well, leaves the document whole anyway).
BUSY_RETRY_S = 2.0


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


# A thread's own timeout for its next requests (``patient``), where set; else the client's (RAG_CHROMA_TIMEOUT_S).
_patience = threading.local()


@contextmanager
def patient(seconds: float) -> Iterator[None]:
    """Give this thread's Chroma requests ``seconds`` (at least) instead of the client's timeout, for the calls of a
    full read: at 10^6 chunks one page or count costs seconds on a cold page cache (a first count of the chunks took
    2.9 s warm and over 5 s after the records' read), and a start-up read that dies on the question path's timeout
    leaves the replica without a BM25 index. A hung server is still noticed, after ``seconds``."""
    before = getattr(_patience, "seconds", None)
    _patience.seconds = max(seconds, before or 0.0)
    try:
        yield
    finally:
        _patience.seconds = before


def patience(default: float) -> float:
    """How long this thread waits for the server now: ``default``, or longer inside ``patient``."""
    return max(default, getattr(_patience, "seconds", None) or 0.0)


def bound_requests(client: Any, seconds: float) -> None:
    """Give every request of chromadb's HTTP client a timeout: to connect, to send, and for each read.

    chromadb (1.5) builds its session as ``httpx.Client(timeout=None)`` (chromadb/api/fastapi.py) and its Settings
    hold no client-side timeout, so without this a stopped server holds a call, and its worker thread, for good.
    The admin client it builds beside the main one (tenant and database checks) gets the same. A thread inside
    ``patient`` gets its own, longer timeout (httpx takes a request's timeout when the request is built).
    """
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        raise RuntimeError(
            "this chromadb version's HttpClient keeps no httpx session at _server._session, so its requests cannot "
            "be given a timeout: install the chromadb of requirements.lock, or adapt rag/store_outage.py"
        )
    session.timeout = httpx.Timeout(seconds)
    build = session.build_request

    def build_request(*args: Any, **kwargs: Any) -> Any:
        longer = getattr(_patience, "seconds", None)
        if longer is not None and longer > seconds:
            kwargs["timeout"] = httpx.Timeout(longer)
        return build(*args, **kwargs)

    session.build_request = build_request  # type: ignore[method-assign]
    admin = getattr(getattr(getattr(client, "_admin_client", None), "_server", None), "_session", None)
    if isinstance(admin, httpx.Client):
        admin.timeout = httpx.Timeout(seconds)


@dataclass
class Connecting:
    """One attempt to connect to the Chroma server, run in a thread of its own (see ChromaStore._connect)."""

    done: threading.Event = field(default_factory=threading.Event)
    opened: tuple[Any, Any, Any, int] | None = None
    error: BaseException | None = None


class PendingRepairs:
    """Documents a failed write may have left half-done, repaired by the next store call that reaches the server.

    A write is several requests (new chunks, the document records, deleting stale chunks, the generation). One that
    fails (a timeout, a lost connection) may have left part of it in the store, and a request that timed out may
    still be committed by the server after the client gave up. Such a document is repaired like one a crash left
    (``ChromaStore.repair``: its record, the write's commit point, decides which chunks stay, the rest go, and the
    generation moves), so the caller that got 503 finds the old version whole, the new one whole, or none. Kept in
    memory: if this process ends first, the repair of the whole store at the next ``rag serve`` start or ``rag
    index`` run does it. Not caught: a request the server commits only after the repair read its document (one
    still queued in a server that resumed); its chunks, which no reader sees, go at that next whole-store repair.

    One pass at a time, never inside another (the repair's own store calls do not start one). The store starts no
    pass in a thread that holds a document lock, except a writer's pass over its own documents right after its own
    write failed. A pass takes each document's lock without waiting: one another writer holds is tried again after
    ``BUSY_RETRY_S``. Callers that waited for a pass that then failed fail at once (a burst of requests during an
    outage costs one timeout, not one each), and none waits longer than the timeout for a pass to start.
    """

    def __init__(self, repair: Callable[[list[str]], set[str]], timeout_s: float) -> None:
        self._repair = repair  # repairs these documents, returns those another writer holds; StoreUnavailable
        self._timeout_s = timeout_s
        self._due: dict[str, tuple[int, float]] = {}  # doc_id -> (mark, not before: time.monotonic())
        self._marks = itertools.count()
        self._guard = threading.Lock()  # _due
        self._running = threading.Lock()  # one pass at a time
        self._local = threading.local()  # inside: this thread runs a pass
        self._failed_at = float("-inf")
        self._failure = UNANSWERED

    def __bool__(self) -> bool:
        return bool(self._due)

    def add(self, doc_ids: Iterable[str]) -> None:
        """Mark these documents for repair: a write of them failed."""
        with self._guard:
            for doc_id in doc_ids:
                self._due[doc_id] = (next(self._marks), 0.0)

    def run(self, doc_ids: Collection[str] | None = None) -> None:
        """Repair the marked documents that are due (only ``doc_ids``, if given); StoreUnavailable if the server
        does not answer (they stay marked)."""
        if not self._due or getattr(self._local, "inside", False):
            return
        asked = time.monotonic()
        if not self._running.acquire(timeout=self._timeout_s):
            raise StoreUnavailable("the vector store is still being repaired after a failed write; retry shortly")
        self._local.inside = True
        try:
            if self._failed_at >= asked:
                raise StoreUnavailable(self._failure)  # the pass this call waited for failed just now
            now = time.monotonic()
            with self._guard:
                due = {
                    d: mark
                    for d, (mark, after) in self._due.items()
                    if after <= now and (doc_ids is None or d in doc_ids)
                }
            if not due:
                return
            try:
                retry = self._repair(sorted(due))
            except StoreUnavailable as exc:
                self._failed_at, self._failure = time.monotonic(), exc.message
                raise
            except Exception:  # not this caller's failure: logged, and tried again later
                log.exception("the repair of %d documents a failed write had left failed", len(due))
                retry = set(due)
            with self._guard:
                for doc_id, mark in due.items():
                    if self._due.get(doc_id, (-1, 0.0))[0] != mark:
                        continue  # marked again meanwhile: that failure needs a pass of its own
                    if doc_id in retry:
                        self._due[doc_id] = (mark, time.monotonic() + BUSY_RETRY_S)
                    else:
                        del self._due[doc_id]
        finally:
            self._local.inside = False
            self._running.release()
