"""Write locks on documents, kept in the shared store so that every replica sees them: part of rag.store.

One record per locked document id in the tenant's ``<name>-locks`` collection, ``{"owner": token, "expires": t}``.
Chroma has no transactions, but ``add`` of an id that exists is a no-op (the first add wins), so "add my record, read
it back, is the owner me?" lets exactly one writer win, on the embedded store and on the Chroma server alike. A lock
is a lease: a thread renews it while its holder works, and a holder that crashed stops blocking others after
``LOCK_LEASE_S`` (a waiter deletes the expired record, only if it is still that holder's, and retries). Before its
commit a writer calls ``check``, so a holder stalled past its lease aborts (DocumentBusy) instead of writing over the
next holder; only a stall of more than a lease between that check and the commit is not caught (Chroma offers no
conditional write to fence it). Expiry reads the wall clock: replicas' clocks must agree to within a few seconds.

When the server stops answering while a lock is held (or while it is taken: the add may land later), releasing it
would only wait out another timeout, so the lease is abandoned: other replicas wait for it to expire, and this
process's next lock of that document deletes it first, so a retry or the repair of that document (rag.store) does
not wait for its own dead lease.

This module does not import chromadb: rag.store hands it the collection, its error translation and its batch size.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from rag.errors import DocumentBusy, StoreUnavailable

log = logging.getLogger(__name__)

# A lease lasts this long past its last renewal; its holder renews it every quarter of that while it works, so a
# holder that crashed blocks that document's writes this long at most.
LOCK_LEASE_S = 10.0
# A writer waits this long for another's lock: longer than a lease, so a dead holder's lock is taken over in time.
LOCK_WAIT_S = 15.0
_POLL_S = 0.02
_PLACEHOLDER = [0.0]  # Chroma wants a vector per record


class DocumentLocks:
    """Leases on document ids, one record each in a Chroma collection; re-entrant per thread."""

    def __init__(
        self,
        collection: Callable[[], Any],
        *,
        guard: Callable[[], AbstractContextManager[None]],
        batch: Callable[[], int],
    ) -> None:
        self._collection = collection  # the locks collection (reopened by the store after a lost connection)
        self._guard = guard  # turns a lost connection into StoreUnavailable
        self._batch = batch
        self._held = threading.local()  # doc_id -> token, of the locks this thread holds
        self._abandoned: dict[str, set[str]] = {}  # doc_id -> tokens of leases this process left in an outage
        self._abandoned_guard = threading.Lock()

    @contextmanager
    def locked(self, doc_ids: Sequence[str], *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        """Hold the locks of these documents (all or none); DocumentBusy after ``wait_s`` of waiting."""
        held = self._held_by_thread()
        wanted = sorted({d for d in doc_ids if d not in held})
        if not wanted:
            yield
            return
        token = self._acquire(wanted, wait_s)
        held.update(dict.fromkeys(wanted, token))
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(wanted, token, stop), daemon=True)
        heartbeat.start()
        outage = False
        try:
            yield
        except StoreUnavailable:
            outage = True
            raise
        finally:
            stop.set()
            if not outage:  # else it may be waiting out a timeout itself; stopped, it renews at most once more
                heartbeat.join()
            for doc_id in wanted:
                held.pop(doc_id, None)
            if outage:
                self._abandon(wanted, token)  # the server does not answer: a release would wait out a timeout
            else:
                try:
                    self._release(wanted, token)
                except StoreUnavailable:
                    log.warning(
                        "could not release the locks of %d documents: their leases expire by themselves", len(wanted)
                    )
                    self._abandon(wanted, token)

    def holds_any(self) -> bool:
        """Whether this thread holds a document lock."""
        return bool(self._held_by_thread())

    def check(self, doc_ids: Sequence[str]) -> None:
        """Make sure this thread still holds these locks, and extend them; DocumentBusy if one was taken over."""
        held = self._held_by_thread()
        with self._guard():
            owners = self._owners(doc_ids)
            lost = sorted(d for d in doc_ids if owners.get(d, ("", 0.0))[0] != held.get(d))
            if lost:
                for doc_id in lost:  # not ours any more: a repair after this failure must wait for the new holder
                    held.pop(doc_id, None)
                raise DocumentBusy(
                    f"the write of {lost[0]!r} took longer than its {LOCK_LEASE_S:.0f} s lock and was abandoned: retry"
                )
            self._extend(list(doc_ids))

    def _held_by_thread(self) -> dict[str, str]:
        held: dict[str, str] | None = getattr(self._held, "locks", None)
        if held is None:
            held = self._held.locks = {}
        return held

    def _acquire(self, doc_ids: list[str], wait_s: float) -> str:
        """All or none: two writers each holding a part of the other's documents would wait for each other."""
        token = uuid.uuid4().hex
        self._reclaim(doc_ids)
        try:
            return self._take(doc_ids, token, time.monotonic() + wait_s)
        except StoreUnavailable:
            self._abandon(doc_ids, token)  # its add may still land
            raise

    def _abandon(self, doc_ids: Sequence[str], token: str) -> None:
        with self._abandoned_guard:
            for doc_id in doc_ids:
                self._abandoned.setdefault(doc_id, set()).add(token)

    def _reclaim(self, doc_ids: Sequence[str]) -> None:
        """Delete the leases this process abandoned on these documents (see the module's docstring)."""
        with self._abandoned_guard:
            mine = {d: self._abandoned.pop(d) for d in doc_ids if d in self._abandoned}
        if not mine:
            return
        try:
            with self._guard():
                for doc_id, tokens in mine.items():
                    for token in tokens:
                        self._collection().delete(ids=[doc_id], where={"owner": token})
        except BaseException:
            for doc_id, tokens in mine.items():
                for token in tokens:
                    self._abandon([doc_id], token)
            raise

    def _take(self, doc_ids: list[str], token: str, deadline: float) -> str:
        while True:
            now = time.time()
            with self._guard():
                for lo in range(0, len(doc_ids), self._batch()):
                    part = doc_ids[lo : lo + self._batch()]
                    self._collection().add(
                        ids=part,
                        embeddings=[_PLACEHOLDER for _ in part],
                        metadatas=[{"owner": token, "expires": now + LOCK_LEASE_S} for _ in part],
                    )
                owners = self._owners(doc_ids)
            if all(owners.get(d, ("", 0.0))[0] == token for d in doc_ids):
                return token
            # Give back what this try got (only those: a conditional delete costs ~1 ms a document).
            self._release([d for d in doc_ids if owners.get(d, ("", 0.0))[0] == token], token)
            # Expired leases are deleted one call per dead holder, not per document: a bulk write killed mid-way
            # leaves thousands under one owner, and deleting them one by one outlasted the wait (2,067 documents:
            # DocumentBusy after 15 s). The owner condition keeps a lease another writer took meanwhile.
            expired: dict[str, list[str]] = {}
            for doc_id, (owner, expires) in owners.items():
                if owner != token and expires < now:
                    expired.setdefault(owner, []).append(doc_id)
            with self._guard():
                for owner, ids in expired.items():
                    log.warning(
                        "taking over the expired write locks of %d documents, %s first (their holder stopped)",
                        len(ids),
                        ids[0],
                    )
                    for lo in range(0, len(ids), self._batch()):
                        self._collection().delete(ids=ids[lo : lo + self._batch()], where={"owner": owner})
            if time.monotonic() > deadline:
                busy = sorted(d for d in doc_ids if owners.get(d, (token, 0.0))[0] != token) or doc_ids
                more = f" (and {len(busy) - 1} more documents)" if len(busy) > 1 else ""
                raise DocumentBusy(f"another write of {busy[0]!r} is in progress{more}: retry in a few seconds")
            time.sleep(_POLL_S * random.uniform(0.5, 1.5))

    def _heartbeat(self, doc_ids: list[str], token: str, stop: threading.Event) -> None:
        while not stop.wait(LOCK_LEASE_S / 4):
            try:
                with self._guard():
                    owners = self._owners(doc_ids)
                    self._extend([d for d in doc_ids if owners.get(d, ("", 0.0))[0] == token])
            except Exception as exc:  # the holder's check before its commit decides; this only logs
                log.warning("could not renew the write locks of %d documents: %s", len(doc_ids), type(exc).__name__)

    def _owners(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        out: dict[str, tuple[str, float]] = {}
        for lo in range(0, len(doc_ids), self._batch()):
            got = self._collection().get(ids=list(doc_ids[lo : lo + self._batch()]), include=["metadatas"])
            for doc_id, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                meta = meta or {}
                out[doc_id] = (str(meta.get("owner", "")), float(meta.get("expires", 0.0)))
        return out

    def _extend(self, doc_ids: list[str]) -> None:
        expires = time.time() + LOCK_LEASE_S
        for lo in range(0, len(doc_ids), self._batch()):
            part = doc_ids[lo : lo + self._batch()]
            self._collection().update(ids=part, metadatas=[{"expires": expires} for _ in part])

    def _release(self, doc_ids: list[str], token: str) -> None:
        with self._guard():
            for lo in range(0, len(doc_ids), self._batch()):
                self._collection().delete(ids=doc_ids[lo : lo + self._batch()], where={"owner": token})
