"""The only place that speaks to Chroma.

Four collections per tenant: ``<name>-chunks`` (chunk text, embedding, offsets), ``<name>-docs`` (the full
normalised text of each document, its source and content hash), ``<name>-locks`` (one lease per document being
written: ``locked``, rag.locks) and ``<name>-changes`` (the change log: which documents each write changed, in
order, so every replica updates its BM25 index by the changed documents only; see ``bump_generation``). The docs
collection's metadata holds a ``generation`` counter, bumped after every change that derived local state (the BM25
index) must notice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import DocumentBusy, StoreUnavailable
from rag.locks import LOCK_WAIT_S, DocumentLocks
from rag.store_outage import Connecting, PendingRepairs, bound_requests, patience, patient
from rag.store_outage import translate_errors as _translate_errors
from rag.text import sentence_spans
from rag.types import Chunk, Document, DocumentInfo

log = logging.getLogger(__name__)

_GENERATION = "generation"
_TRIMMED_BEFORE = "trimmed_before"
_DOCS_PER_READ = 100
_TRIM_EVERY = 256  # a process trims the change log at its first write and every 256th after
# A reader reads the log again from this far before the last value it applied (see bump_generation): a write whose
# entry lands later than that (its add took longer than a minute) is missed until the next reconcile pass.
CHANGE_WINDOW_NS = 60 * 10**9
CHANGE_LOG_KEEP_NS = 7 * 24 * 3600 * 10**9  # a week: a replica stopped for longer rebuilds its BM25 index at start
_PLACEHOLDER = [0.0]  # the docs collection stores text, not vectors; Chroma still wants one per record
_PAGE = 2000
# Every chunk and document record carries ``bucket`` = bucket_of(its id), 0..BUCKETS-1, so that a full read of a
# collection goes bucket range by bucket range (an indexed lookup) instead of by offset (Chroma sorts and skips the
# whole collection for every page: quadratic at 10^6 rows). Never change BUCKETS: stored buckets would not match.
BUCKETS = 1024
_BUCKET = "bucket"
# The collection-metadata key, set only when this version CREATES a collection, that says every row in it has a
# bucket (its value: BUCKETS). Collections created before keep offset paging: their older rows have no bucket.
_BUCKETED = "buckets"
DEFAULT_TIMEOUT_S = 5.0  # rag.config.DEFAULT_CHROMA_TIMEOUT_S, the setting RAG_CHROMA_TIMEOUT_S
# What one call of a maintenance read (BM25 rebuild, start-up repair, reconcile; bulk_reads) may take on the server:
# at 10^6 chunks a count or page costs seconds on a cold page cache, and the `$nin` look for rows without a bucket
# 11-18 s. Questions keep DEFAULT_TIMEOUT_S / RAG_CHROMA_TIMEOUT_S.
BULK_TIMEOUT_S = 120.0
# Test-only: a process whose environment names a document id here kills itself (SIGKILL) after writing that
# document's chunks and before writing its record, so tests can crash a real `rag serve` exactly there.
_KILL_BEFORE_RECORD_OF = os.environ.get("RAG_TEST_KILL_BEFORE_RECORD_OF") or None


@dataclass(frozen=True)
class DenseHit:
    """A nearest chunk: its metadata, and its in-context sentence vectors (decoded) when it was stored with them."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    similarity: float
    sentence_vectors: np.ndarray | None = None


@dataclass(frozen=True)
class Change:
    """One entry of the change log: these documents changed (written, replaced or deleted) at ``seq``."""

    entry_id: str
    seq: int
    doc_ids: tuple[str, ...]


@dataclass(frozen=True)
class ChangeLog:
    """The change log read from one point on: its entries (oldest first), where it was trimmed, and the store's
    identity (a store deleted and created again has another, so nothing derived from the old one is reused)."""

    entries: list[Change]
    trimmed_before: int
    epoch: str


@dataclass(frozen=True)
class IndexedDocument:
    """What the BM25 index needs of one document: its record and its current chunks (id, text, start)."""

    doc_id: str
    content_hash: str
    title: str
    page_starts: tuple[int, ...]
    chunks: list[tuple[str, str, int]]


class ChromaStore:
    """Chunks, embeddings and document texts of one tenant's collection."""

    def __init__(
        self,
        *,
        path: Path | None = None,
        url: str | None = None,
        collection: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not (path or url):
            raise ValueError("ChromaStore needs a path (embedded) or a url (Chroma server)")
        self._path = path
        self._url = url
        self._collection = collection
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._opened: tuple[Any, Any, Any, int] | None = None  # client, chunks, docs, max batch
        self._connecting: Connecting | None = None
        self._lock_collection: tuple[Any, Any] | None = None  # (the client it came from, the locks collection)
        self._change_collection: tuple[Any, Any] | None = None  # (the client it came from, the change log)
        self._bumps = 0
        # Called with each change this process commits (after its generation bump): the BM25 index of this
        # process applies its own writes at once (read-your-writes), other replicas through the change log.
        self.listeners: list[Callable[[Change], None]] = []
        # The locks' own calls never start a pending repair (their heartbeat runs in threads of its own).
        self._doc_locks = DocumentLocks(
            lambda: self._locks,
            guard=lambda: _translate_errors(self._reset),
            batch=lambda: self._open(settle=False)[3],
        )
        self._pending = PendingRepairs(self._repair_pending, timeout_s)
        # The embedded store opens at once (a bad path fails early); a server may be down now and come back later,
        # so it is (re)connected on first use and after every connection failure.
        if url is None:
            self._open()

    def _open(self, *, settle: bool = True) -> tuple[Any, Any, Any, int]:
        opened = self._opened
        if opened is None:
            opened = self._connect() if self._url else self._open_embedded()
        if settle:
            self._settle()
        return opened

    def _settle(self) -> None:
        """Repair the documents failed writes left half-done (PendingRepairs) before this call uses the store.

        Never in a thread that holds a document lock: a writer must not wait for the repair of its own document,
        nor hold one document's lock while a repair takes another's.
        """
        if self._pending and not self._doc_locks.holds_any():
            self._pending.run()

    def _open_embedded(self) -> tuple[Any, Any, Any, int]:
        with self._lock, _translate_errors(self._reset):
            if self._opened is None:
                import chromadb
                from chromadb.config import Settings as ChromaSettings

                assert self._path is not None
                self._path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(
                    path=str(self._path), settings=ChromaSettings(anonymized_telemetry=False)
                )
                self._opened = _collections(client, self._collection)
            return self._opened

    def _connect(self) -> tuple[Any, Any, Any, int]:
        """Connect to the server, waiting at most the timeout.

        chromadb's HttpClient talks to the server while it is built, before a timeout can be set on it, so it is
        built in a thread of its own: a hung server then holds that one thread (until it answers), never the caller
        nor the lock. One attempt at a time: callers that arrive while it runs wait for the same attempt.
        """
        with self._lock:
            if self._opened is not None:
                return self._opened
            attempt = self._connecting
            if attempt is None or attempt.done.is_set():
                attempt = self._connecting = Connecting()
                threading.Thread(target=self._build_client, args=(attempt,), name="chroma-connect", daemon=True).start()
        with _translate_errors(self._reset):
            wait_s = patience(self._timeout_s)  # longer inside bulk_reads (the full reads of maintenance)
            if not attempt.done.wait(wait_s):
                raise TimeoutError(f"the Chroma server did not answer within {wait_s:g} s")
            if attempt.error is not None:
                raise attempt.error
            assert attempt.opened is not None
            return attempt.opened

    def _build_client(self, attempt: Connecting) -> None:
        try:
            from urllib.parse import urlparse

            import chromadb
            from chromadb.config import Settings as ChromaSettings

            assert self._url is not None
            parsed = urlparse(self._url)
            client = chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or 8000,
                ssl=parsed.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
            bound_requests(client, self._timeout_s)
            attempt.opened = _collections(client, self._collection)
            with self._lock:
                self._opened = attempt.opened
        except BaseException as exc:  # handed to the callers waiting for this attempt
            attempt.error = exc
        finally:
            attempt.done.set()

    def _reset(self) -> None:
        """Forget a server connection that failed, so the next call reconnects."""
        if self._url:
            self._opened = None

    @property
    def _client(self) -> Any:
        return self._open()[0]

    @property
    def _chunks(self) -> Any:
        return self._open()[1]

    @property
    def _docs(self) -> Any:
        return self._open()[2]

    @property
    def _max_batch(self) -> int:
        return self._open()[3]

    @property
    def location(self) -> str:
        """Where the store lives, for logs: the server URL or the embedded path, and the collection."""
        return f"{self._url or self._path} collection={self._collection}"

    # --- reads ---------------------------------------------------------------------------------------------
    def generation(self) -> int:
        """The change counter; any write bumps it."""
        with _translate_errors(self._reset):
            meta = self._client.get_collection(self._docs.name, embedding_function=None).metadata or {}
        return int(meta.get(_GENERATION, 0))

    def count_chunks(self) -> int:
        with _translate_errors(self._reset):
            return int(self._chunks.count())

    def count_documents(self) -> int:
        with _translate_errors(self._reset):
            return int(self._docs.count())

    def list_documents(self) -> list[DocumentInfo]:
        """Every document, without its text, sorted by id."""
        infos: list[DocumentInfo] = []
        for got in self._read_all(lambda: self._docs, ["metadatas"]):
            infos.extend(_info(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True))
        return sorted(infos, key=lambda info: info.doc_id)

    def get_document(self, doc_id: str, *, with_text: bool = True) -> DocumentInfo | None:
        """One document (with its normalised text), or None."""
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        with _translate_errors(self._reset):
            got = self._docs.get(ids=[doc_id], include=include)
        if not got["ids"]:
            return None
        info = _info(got["ids"][0], (got["metadatas"] or [{}])[0])
        if with_text:
            info.text = (got["documents"] or [""])[0]
        return info

    def document_hashes(self) -> dict[str, tuple[str, str]]:
        """doc_id -> (content_hash, root) for every document."""
        return {d.doc_id: (d.content_hash, d.root) for d in self.list_documents()}

    def chunk_ids_of(self, doc_id: str) -> list[str]:
        with _translate_errors(self._reset):
            return list(self._chunks.get(where={"doc_id": doc_id}, include=[])["ids"])

    def chunks_without_sentence_vectors(self) -> list[tuple[str, str]]:
        """(chunk id, text) of every current chunk whose stored sentence vectors are missing or do not fit its text.

        Missing: written by a version that did not store them. Not fitting: not one vector per
        ``sentence_spans`` span of the text (written with another sentence splitter); the answerer ignores those.
        Chunks no reader sees (no document record, or a record of another content hash) are left out: an index
        run deletes them. One paged read of the collection; vectors are counted from their encoded length, not
        decoded.
        """
        hashes = {d.doc_id: d.content_hash for d in self.list_documents()}
        out: list[tuple[str, str]] = []
        for got in self._read_all(lambda: self._chunks, _CHUNK_FIELDS):
            for chunk_id, text, meta in zip(got["ids"], chunk_texts(got), got["metadatas"] or [], strict=True):
                meta = meta or {}
                if hashes.get(str(meta.get("doc_id"))) != meta.get("content_hash"):
                    continue
                if _stored_sentence_count(meta) != len(sentence_spans(text or "")):
                    out.append((chunk_id, text or ""))
        return out

    def query(self, embedding: np.ndarray, *, n: int) -> list[DenseHit]:
        """Nearest chunks by cosine similarity."""
        # Chroma returns fewer than n_results when the collection holds fewer (none when empty): no count first.
        with _translate_errors(self._reset):
            got = self._chunks.query(
                query_embeddings=[embedding.tolist()],
                n_results=n,
                include=[*_CHUNK_FIELDS, "distances"],
            )
        first = {"documents": (got["documents"] or [[]])[0], "metadatas": (got["metadatas"] or [[]])[0]}
        return [
            DenseHit(
                chunk_id=i,
                text=t,
                metadata=_plain(m),
                similarity=1.0 - float(d),
                sentence_vectors=_sentence_vectors_of(m),
            )
            for i, t, m, d in zip(
                got["ids"][0], chunk_texts(first), first["metadatas"], (got["distances"] or [[]])[0], strict=True
            )
        ]

    # --- document locks ------------------------------------------------------------------------------------
    def locked(self, doc_ids: Sequence[str]) -> AbstractContextManager[None]:
        """Hold the write locks of these documents, so their writes and deletes take turns, across replicas.

        Leases kept in ``<name>-locks`` (see rag.locks). Waits at most ``LOCK_WAIT_S``, then DocumentBusy.
        Pending repairs run first, before any lock is held (see ``_settle``).
        """
        self._settle()
        return self._doc_locks.locked(doc_ids)

    @property
    def _locks(self) -> Any:
        client = self._open(settle=False)[0]
        cached = self._lock_collection
        if cached is None or cached[0] is not client:
            with _translate_errors(self._reset):
                collection = client.get_or_create_collection(f"{self._collection}-locks", embedding_function=None)
            cached = self._lock_collection = (client, collection)
        return cached[1]

    # --- writes --------------------------------------------------------------------------------------------
    def replace_documents(self, items: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]]) -> None:
        """Make each document's ``chunks`` (with their ``embeddings``) its only chunks: the one write path.

        Under the documents' locks (``locked``), so no other write or delete of them interleaves. Order matters
        for crash safety and for readers: all new chunks are upserted first (ids are content-derived, so a rerun is
        idempotent), then the document records switch to the new content hashes (retrieval only shows chunks whose
        hash matches the record), then stale chunks are deleted, then the generation moves once. A crash at any
        point leaves chunks no reader sees, which ``repair`` removes (at the next start, or the next index run). A
        write that fails is repaired the same way, by the next store call once the server answers (at once if it
        still answers): the documents end as their records say, old or new, never mixed.
        """
        if not items:
            return
        doc_ids = [d.doc_id for d, _, _ in items]
        try:
            with self.locked(doc_ids):
                try:
                    self._write(items, doc_ids)
                except StoreUnavailable:
                    raise
                except Exception:
                    self._repair_now(doc_ids)  # the server answers: clean up under the locks still held
                    raise
            self.bump_generation(doc_ids)
        except StoreUnavailable:
            self._pending.add(doc_ids)  # see PendingRepairs: part of the write may be in the store, or land later
            raise

    def _write(self, items: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]], doc_ids: list[str]) -> None:
        with _translate_errors(self._reset):
            old = self._chunks.get(where={"doc_id": {"$in": doc_ids}}, include=[])["ids"]
            chunks = [c for _, cs, _ in items for c in cs]
            metas = [_chunk_meta(c, d) for d, cs, _ in items for c in cs]
            vectors = np.concatenate([v for _, cs, v in items if len(cs)] or [np.zeros((0, 1), np.float32)])
            for lo in range(0, len(chunks), self._max_batch):
                batch = chunks[lo : lo + self._max_batch]
                self._chunks.upsert(
                    ids=[c.chunk_id for c in batch],
                    embeddings=vectors[lo : lo + len(batch)],
                    metadatas=metas[lo : lo + len(batch)],
                )
            if _KILL_BEFORE_RECORD_OF in doc_ids:
                log.warning("RAG_TEST_KILL_BEFORE_RECORD_OF=%s: killing this process", _KILL_BEFORE_RECORD_OF)
                os.kill(os.getpid(), signal.SIGKILL)
            self._doc_locks.check(doc_ids)  # the switch below is the commit: only while the locks are surely ours
            for lo in range(0, len(items), self._max_batch):
                group = items[lo : lo + self._max_batch]
                self._docs.upsert(
                    ids=[d.doc_id for d, _, _ in group],
                    embeddings=[_PLACEHOLDER for _ in group],
                    documents=[d.text for d, _, _ in group],
                    metadatas=[record_meta(d, len(cs)) for d, cs, _ in group],
                )
            stale = sorted(set(old) - {c.chunk_id for c in chunks})
            for lo in range(0, len(stale), self._max_batch):
                self._chunks.delete(ids=stale[lo : lo + self._max_batch])

    def _repair_now(self, doc_ids: Sequence[str]) -> None:
        """Repair what a failed write left behind now, if the store lets us; else the next store call does."""
        self._pending.add(doc_ids)
        try:
            self._pending.run(doc_ids)
        except Exception as exc:  # the write's own error propagates; this one is only logged
            log.warning(
                "a write of %d documents failed and could not be repaired now (%s): the next store call repairs it",
                len(doc_ids),
                type(exc).__name__,
            )

    def _repair_pending(self, doc_ids: list[str]) -> set[str]:
        """Repair documents a failed write may have left half-done (PendingRepairs); returns those another writer
        holds now (its write, if it ends well, leaves them whole; else they are tried again)."""
        busy: set[str] = set()
        removed = 0
        for doc_id in doc_ids:
            try:
                removed += self._repair_document(doc_id, wait_s=0)
            except DocumentBusy:
                busy.add(doc_id)
        if len(busy) < len(doc_ids):
            # Even if nothing was removed: the failed write may have changed the store without moving the generation.
            self.bump_generation([d for d in doc_ids if d not in busy])
            log.log(
                logging.WARNING if removed else logging.INFO,
                "repaired %d documents a failed write had left half-done: %d stray chunks deleted",
                len(doc_ids) - len(busy),
                removed,
            )
        return busy

    def chunk_census(self) -> Counter[tuple[str, str]]:
        """How many chunks each (doc_id, content_hash) has: one paged read of the collection, held a page at a time
        (10^5 chunks with their sentence vectors are ~0.6 GB: never all in memory at once)."""
        census: Counter[tuple[str, str]] = Counter()
        for _, meta in self._chunk_metadatas():
            if meta.get("doc_id"):
                census[(str(meta["doc_id"]), str(meta.get("content_hash")))] += 1
        return census

    def repair(self, census: Counter[tuple[str, str]] | None = None) -> int:
        """Delete every chunk no reader may see (no record for its document, or a record of another content hash).

        What a crash or a failed write between the chunk write and the record write leaves behind. Candidates come
        from ``census`` (``chunk_census``, read now if not given); each candidate is re-read and cleaned under its
        lock, so a write in progress elsewhere is never mistaken for debris. Returns how many chunks were deleted.
        """
        hashes = {d.doc_id: d.content_hash for d in self.list_documents()}
        census = self.chunk_census() if census is None else census
        candidates = {doc_id for doc_id, content_hash in census if hashes.get(doc_id) != content_hash}
        removed = 0
        for doc_id in sorted(candidates):
            try:
                removed += self._repair_document(doc_id)
            except DocumentBusy:
                log.warning("document %s is being written elsewhere: its stray chunks are left for later", doc_id)
        if removed:
            self.bump_generation()
        return removed

    def _repair_document(self, doc_id: str, *, wait_s: float = LOCK_WAIT_S) -> int:
        with self._doc_locks.locked([doc_id], wait_s=wait_s), _translate_errors(self._reset):
            record = self._docs.get(ids=[doc_id], include=["metadatas"])
            meta = ((record["metadatas"] or [{}])[0] or {}) if record["ids"] else {}
            current = meta.get("content_hash") if record["ids"] else None
            got = self._chunks.get(where={"doc_id": doc_id}, include=["metadatas"])
            stale = [
                i
                for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)
                if (m or {}).get("content_hash") != current
            ]
            for lo in range(0, len(stale), self._max_batch):
                self._chunks.delete(ids=stale[lo : lo + self._max_batch])
        if current is not None and len(got["ids"]) - len(stale) < int(meta.get("chunks", 0)):
            log.warning(
                "document %s has %d of the %d chunks its record counts: rag serve's start and rag index re-index "
                "it from its stored text (so does uploading it again)",
                doc_id,
                len(got["ids"]) - len(stale),
                int(meta.get("chunks", 0)),
            )
        return len(stale)

    def has_all_chunks(self, info: DocumentInfo) -> bool:
        """Whether the store holds as many chunks of this document's recorded content as its record says."""
        with _translate_errors(self._reset):
            got = self._chunks.get(
                where={"$and": [{"doc_id": info.doc_id}, {"content_hash": info.content_hash}]}, include=[]
            )
        return len(got["ids"]) >= info.chunks

    def set_sentence_vectors(self, ids: Sequence[str], vectors: Sequence[np.ndarray]) -> None:
        """Store each chunk's in-context sentence vectors; its embedding, text and other metadata stay as they are.

        Chroma's ``update`` merges the given metadata key into each record and writes a batch at once, so a crash
        leaves every chunk with its whole vectors or without them; an id deleted meanwhile stays deleted (Chroma
        skips it). Vectors depend only on the chunk's text, which its id is derived from, so a writer racing this
        one on the same id stores the same vectors.

        The generation does not move: nothing derived from the store holds sentence vectors (the BM25 index reads
        chunks without them, see ``scan_chunks``) and dense queries read them live, so replicas see them at once,
        and a bump would only make every replica re-read the documents for an identical BM25 index.
        """
        if len(ids) != len(vectors):
            raise ValueError("set_sentence_vectors needs one array of vectors per id")
        metas = [{_SENTENCE_VECTORS: encode_vectors(v) if len(v) else None} for v in vectors]
        with _translate_errors(self._reset):
            for lo in range(0, len(ids), self._max_batch):
                self._chunks.update(
                    ids=list(ids[lo : lo + self._max_batch]), metadatas=metas[lo : lo + self._max_batch]
                )

    def delete_document(self, doc_id: str) -> bool:
        """Remove a document and its chunks (under its lock, see ``locked``); False if it was not there."""
        try:
            with self.locked([doc_id]), _translate_errors(self._reset):
                existed = bool(self._docs.get(ids=[doc_id], include=[])["ids"])
                # Record first, chunks second: a crash in between leaves orphan chunks that retrieval ignores
                # (no record, so no matching hash) and ``repair`` deletes.
                self._docs.delete(ids=[doc_id])
                ids = self.chunk_ids_of(doc_id)
                for lo in range(0, len(ids), self._max_batch):
                    self._chunks.delete(ids=ids[lo : lo + self._max_batch])
            if existed or ids:
                self.bump_generation([doc_id])
        except StoreUnavailable:
            self._pending.add([doc_id])  # as in replace_documents
            raise
        return existed

    def stale_chunk_ids(self) -> list[str]:
        """Chunks no reader may see: their document has no record, or a record of another content hash.

        An index run killed between writing a document's new record and deleting its old chunks leaves such
        chunks behind; retrieval already ignores them and ``repair`` deletes them (at start, and in every index run).
        """
        hashes = {d.doc_id: d.content_hash for d in self.list_documents()}
        return sorted(
            cid for cid, m in self._chunk_metadatas() if hashes.get(str(m.get("doc_id"))) != m.get("content_hash")
        )

    def delete_chunks(self, ids: Sequence[str]) -> None:
        """Delete chunks by id (used to clear stale ones)."""
        if not ids:
            return
        with _translate_errors(self._reset):
            for lo in range(0, len(ids), self._max_batch):
                self._chunks.delete(ids=list(ids[lo : lo + self._max_batch]))
        self.bump_generation()

    def _chunk_metadatas(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every chunk's id and metadata (without its text and sentence vectors), read and dropped page by page."""
        for ids, _, metas in self.scan_chunks():
            yield from zip(ids, metas, strict=True)

    def bulk_reads(self) -> AbstractContextManager[None]:
        """Within it, this thread's calls may take BULK_TIMEOUT_S instead of RAG_CHROMA_TIMEOUT_S: for the full reads
        of maintenance (BM25 rebuild, start-up repair and reconcile), never for a request's own calls (those keep
        the short timeout, so a hung server costs a request RAG_CHROMA_TIMEOUT_S)."""
        return patient(BULK_TIMEOUT_S)

    def scan_chunks(self) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]]]]:
        """The collection a page at a time: (ids, texts, metadata without text and sentence vectors). Not one
        consistent read: a write during the scan may show in part (callers follow the change log, or lock)."""
        for got in self._read_all(lambda: self._chunks, _CHUNK_FIELDS):
            yield list(got["ids"]), chunk_texts(got), [_plain(m) for m in got["metadatas"] or []]

    def _read_all(self, opened: Callable[[], Any], include: list[Any]) -> Iterator[Any]:
        """Every row of the collection ``opened()`` returns (connecting if need be), a Chroma ``get`` result of about ``_PAGE`` rows at a time.

        A collection this version created (``_BUCKETED`` in its metadata) is read bucket range by bucket range,
        ``ceil(BUCKETS * _PAGE / count)`` buckets a call, with ``$in`` on the bucket (Chroma 1.5 answers it from
        SQLite's (key, int_value) index; a ``$gte``/``$lt`` range selects every row above ``lo`` and every row below
        ``hi`` and intersects them: half the collection per call). No offsets: each page costs its own rows, where an
        offset page costs the whole collection (Chroma orders all rows for every page). Rows of a bucketed collection
        that have no bucket (written by an earlier version, which README says not to mix) are read last. Any other
        collection is read by offset, as before. Not one consistent read: a write during it may show in part.
        """
        with _translate_errors(self._reset):
            collection = opened()
            total = int(collection.count())
            buckets = int((collection.metadata or {}).get(_BUCKETED, 0))
        if total <= _PAGE:  # one call, as a page by offset would be
            with _translate_errors(self._reset):
                got = collection.get(include=include)
            yield got
            return
        if not buckets:
            for offset in range(0, total, _PAGE):
                with _translate_errors(self._reset):
                    got = collection.get(include=include, limit=_PAGE, offset=offset)
                yield got
            return
        step = max(1, min(buckets, math.ceil(buckets * _PAGE / total)))
        seen = 0
        for lo in range(0, buckets, step):
            where = {_BUCKET: {"$in": list(range(lo, min(lo + step, buckets)))}}
            with _translate_errors(self._reset):
                got = collection.get(where=where, include=include)
            seen += len(got["ids"])
            yield got
        if seen < total:  # rows without a bucket, or rows deleted during the read: one more (whole-collection) look
            where = {_BUCKET: {"$nin": list(range(buckets))}}
            for offset in range(0, total - seen, _PAGE):
                with _translate_errors(self._reset):
                    got = collection.get(where=where, include=include, limit=_PAGE, offset=offset)
                if not got["ids"]:
                    break
                yield got

    def bump_generation(self, doc_ids: Sequence[str] = ()) -> Change | None:
        """Move the change counter to a value no reader has seen; log ``doc_ids`` as changed at that value.

        Read-modify-write of a counter loses updates when two processes write at once (both write n+1, and a
        reader that rebuilt at the first n+1 misses the second write). The clock in nanoseconds, kept above the
        old value, gives every write its own value, so every reader notices every write.

        The change-log entry is added before the counter moves: a reader that sees the new value finds the entry.
        Two writers racing can still add their entries out of order (one takes its value, the other takes a larger
        one and commits first), so readers read the log again from ``CHANGE_WINDOW_NS`` before the last value they
        applied and skip the entries they have (rag.retrieval.lexical). Returns the logged change (None if no
        documents were named). A process killed between its write and this call leaves no entry: replicas learn of
        that document at their next start's reconcile pass (``LexicalSide``), or when it is written again.
        """
        with _translate_errors(self._reset):
            docs = self._client.get_collection(self._docs.name, embedding_function=None)
            meta = dict(docs.metadata or {})
            seq = max(int(meta.get(_GENERATION, 0)) + 1, time.time_ns())
            change = None
            if doc_ids:
                change = Change(f"{seq:020d}-{uuid.uuid4().hex[:12]}", seq, tuple(sorted(set(doc_ids))))
                self._changes.add(
                    ids=[change.entry_id],
                    embeddings=[_PLACEHOLDER],
                    metadatas=[{"seq": seq, "docs": json.dumps(change.doc_ids)}],
                )
            meta[_GENERATION] = seq
            docs.modify(metadata=meta)
        self._bumps += 1
        if self._bumps % _TRIM_EVERY == 1:
            self._trim_changes()
        if change is not None:
            for listener in list(self.listeners):
                try:
                    listener(change)
                except Exception:  # the write is committed; the listener catches up from the log later
                    log.exception("a listener of change %s failed", change.entry_id)
        return change

    def changes_since(self, after: int, *, limit: int) -> ChangeLog | None:
        """The change-log entries with a value above ``after``, oldest first; None if there are more than ``limit``
        (a reader that far behind rebuilds from the collection instead).

        ``trimmed_before`` is read after the entries: the trim writes it before deleting (``_trim_changes``), so a
        reader whose entries were read after a trim always sees that trim's bound.
        """
        with _translate_errors(self._reset):
            got = self._changes.get(where={"seq": {"$gt": int(after)}}, include=["metadatas"], limit=limit + 1)
            if len(got["ids"]) > limit:
                return None
            entries = [
                Change(entry_id, int(m["seq"]), tuple(json.loads(m["docs"])))
                for entry_id, m in zip(got["ids"], got["metadatas"] or [], strict=True)
            ]
            changes = self._client.get_collection(self._changes.name, embedding_function=None)
            trimmed = int((changes.metadata or {}).get(_TRIMMED_BEFORE, 0))
            epoch = str(self._docs.id)
        return ChangeLog(sorted(entries, key=lambda c: (c.seq, c.entry_id)), trimmed, epoch)

    def epoch(self) -> str:
        """The store's identity: the docs collection's id, new whenever the collection is created again."""
        return str(self._docs.id)

    def _trim_changes(self) -> None:
        """Delete change-log entries older than ``CHANGE_LOG_KEEP_NS``; a replica that has not read the log for that
        long rebuilds its BM25 index from the collection. The bound is written first (see ``changes_since``)."""
        try:
            with _translate_errors(self._reset):
                cutoff = time.time_ns() - CHANGE_LOG_KEEP_NS
                changes = self._client.get_collection(self._changes.name, embedding_function=None)
                meta = dict(changes.metadata or {})
                if int(meta.get(_TRIMMED_BEFORE, 0)) >= cutoff:
                    return
                meta[_TRIMMED_BEFORE] = cutoff
                changes.modify(metadata=meta)
                self._changes.delete(where={"seq": {"$lt": cutoff}})
        except StoreUnavailable:
            log.warning("could not trim the change log now; the next writes try again")

    @property
    def _changes(self) -> Any:
        client = self._open(settle=False)[0]
        cached = self._change_collection
        if cached is None or cached[0] is not client:
            with _translate_errors(self._reset):
                collection = client.get_or_create_collection(
                    f"{self._collection}-changes", embedding_function=None, metadata={_TRIMMED_BEFORE: 0}
                )
            cached = self._change_collection = (client, collection)
        return cached[1]

    def indexed_documents(self, doc_ids: Sequence[str]) -> dict[str, IndexedDocument | None]:
        """Each document's record and current chunks, as the BM25 index needs them (None: no such document).

        Reads the records first, then the chunks of each record's content hash: a write committed in between
        leaves fewer chunks here, and its own change-log entry makes the reader read the document again.
        """
        out: dict[str, IndexedDocument | None] = {doc_id: None for doc_id in doc_ids}
        ids = list(out)
        with _translate_errors(self._reset):
            for lo in range(0, len(ids), _DOCS_PER_READ):
                group = ids[lo : lo + _DOCS_PER_READ]
                records = self._docs.get(ids=group, include=["metadatas"])
                infos = {i: _info(i, m) for i, m in zip(records["ids"], records["metadatas"] or [], strict=True)}
                if not infos:
                    continue
                got = self._chunks.get(where={"doc_id": {"$in": list(infos)}}, include=_CHUNK_FIELDS)
                chunks: dict[str, list[tuple[str, str, int]]] = {i: [] for i in infos}
                for chunk_id, text, meta in zip(got["ids"], chunk_texts(got), got["metadatas"] or [], strict=True):
                    doc_id = str((meta or {}).get("doc_id"))
                    info = infos.get(doc_id)
                    if info is not None and (meta or {}).get("content_hash") == info.content_hash:
                        chunks[doc_id].append((chunk_id, text or "", int(meta.get("start", 0))))
                for doc_id, info in infos.items():
                    out[doc_id] = IndexedDocument(
                        doc_id, info.content_hash, info.title, info.page_starts, sorted(chunks[doc_id], key=_by_start)
                    )
        return out

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, DenseHit]:
        """These chunks (text, metadata, decoded sentence vectors) by id; ids no longer stored are left out."""
        if not ids:
            return {}
        with _translate_errors(self._reset):
            got = self._chunks.get(ids=list(ids), include=_CHUNK_FIELDS)
        return {
            chunk_id: DenseHit(
                chunk_id=chunk_id,
                text=text,
                metadata=_plain(meta),
                similarity=0.0,
                sentence_vectors=_sentence_vectors_of(meta),
            )
            for chunk_id, text, meta in zip(got["ids"], chunk_texts(got), got["metadatas"] or [], strict=True)
        }


def close_embedded_stores() -> None:
    """Close every embedded Chroma this process has opened (chromadb keeps one per path, each holding some 16 files
    open, until the process ends). For a tool that opens many indexes one after another (benchmarks'
    small_collections.py opens a thousand); a ChromaStore opened before cannot be used after it."""
    from chromadb.api.shared_system_client import SharedSystemClient

    for system in list(SharedSystemClient._identifier_to_system.values()):
        system.stop()
    SharedSystemClient.clear_system_cache()


def _by_start(chunk: tuple[str, str, int]) -> tuple[int, str]:
    return chunk[2], chunk[0]


def _collections(client: Any, name: str) -> tuple[Any, Any, Any, int]:
    # The metadata given here is written only when the collection is created: an existing one keeps its own (so a
    # collection created by an earlier version never claims buckets its older rows lack).
    chunks = client.get_or_create_collection(
        f"{name}-chunks",
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={_BUCKETED: BUCKETS},
    )
    docs = client.get_or_create_collection(
        f"{name}-docs", embedding_function=None, metadata={_GENERATION: 0, _BUCKETED: BUCKETS}
    )
    return client, chunks, docs, int(client.get_max_batch_size())


def record_meta(document: Document, chunks: int) -> dict[str, Any]:
    """A document record's metadata (its text is the record's ``documents`` entry)."""
    return {
        "source": document.source,
        "root": document.root,
        "title": document.title,
        "content_hash": document.content_hash,
        "chunks": chunks,
        _PAGE_STARTS: _encode_page_starts(document.page_starts),
        _BUCKET: bucket_of(document.doc_id),
    }


def _chunk_meta(chunk: Chunk, document: Document) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "start": chunk.start,
        "end": chunk.end,
        "index": chunk.index,
        "content_hash": document.content_hash,
        _TEXT: chunk.text,
        _BUCKET: bucket_of(chunk.chunk_id),
    }
    if chunk.sentence_vectors is not None and len(chunk.sentence_vectors):
        meta[_SENTENCE_VECTORS] = encode_vectors(chunk.sentence_vectors)
    return meta


# The metadata key of a chunk's in-context sentence vectors (encode_vectors); nothing outside the store sees it.
_SENTENCE_VECTORS = "sentence_vectors"
# The metadata key of a chunk's text. Not Chroma's ``documents``: Chroma keeps those in a full-text (FTS5 trigram)
# index as well, which this project never queries (its BM25 is rag.retrieval.lexical), and writing that index was a
# third of the store write: 509 -> 777 chunks/s through replace_documents at 10^5 chunks, 21% less disk
# (benchmarks/bench_store_write.py). Chunks written before keep their text in ``documents``; readers take either.
_TEXT = "text"
_CHUNK_FIELDS: list[Any] = ["documents", "metadatas"]


def chunk_texts(got: Any) -> list[str]:
    """The texts of a Chroma read of chunks (``include=_CHUNK_FIELDS``), from the metadata key or ``documents``."""
    metas = got["metadatas"] or []
    documents = got["documents"] or [None] * len(metas)
    return [str((m or {}).get(_TEXT) or d or "") for m, d in zip(metas, documents, strict=True)]


def _plain(meta: Any) -> dict[str, Any]:
    """A chunk's metadata without what the store keeps for itself (its text, sentence vectors and bucket)."""
    out = dict(meta or {})
    out.pop(_SENTENCE_VECTORS, None)
    out.pop(_TEXT, None)
    out.pop(_BUCKET, None)
    return out


def bucket_of(item_id: str) -> int:
    """The bucket of a chunk or document id: the same in every process and version (not Python's salted hash)."""
    return int(hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:8], 16) % BUCKETS


def _sentence_vectors_of(meta: Any) -> np.ndarray | None:
    blob = (meta or {}).get(_SENTENCE_VECTORS)
    return decode_vectors(blob) if blob else None


def _stored_sentence_count(meta: dict[str, Any], dimensions: int = 384) -> int:
    """How many vectors a chunk's metadata holds, from the encoded length (-1 if that is not a whole number)."""
    blob = meta.get(_SENTENCE_VECTORS) or ""
    row = 4 * (2 * dimensions) // 3  # base64 of one float16 row: 768 bytes, a multiple of 3, so no padding
    rows, rest = divmod(len(blob), row)
    return rows if rest == 0 else -1


def encode_vectors(vectors: np.ndarray) -> str:
    """A (n, 384) array as base64 float16 (Chroma metadata holds only scalars and strings)."""
    import base64

    return base64.b64encode(np.ascontiguousarray(vectors, dtype=np.float16).tobytes()).decode("ascii")


def decode_vectors(blob: str, dimensions: int = 384) -> np.ndarray:
    """The inverse of encode_vectors, as float32."""
    import base64

    return np.frombuffer(base64.b64decode(blob), dtype=np.float16).reshape(-1, dimensions).astype(np.float32)


def _info(doc_id: str, meta: Any) -> DocumentInfo:
    meta = dict(meta or {})
    return DocumentInfo(
        doc_id=doc_id,
        source=str(meta.get("source", "")),
        content_hash=str(meta.get("content_hash", "")),
        chunks=int(meta.get("chunks", 0)),
        root=str(meta.get("root", "")),
        title=str(meta.get("title", "")),
        page_starts=_decode_page_starts(meta.get(_PAGE_STARTS)),
    )


# The document record's metadata key of its page starts: a JSON list of offsets ("" for a document without pages;
# a record written before pages were kept has no key). Chroma metadata holds only scalars and strings.
_PAGE_STARTS = "page_starts"


def _encode_page_starts(starts: Sequence[int]) -> str:
    return json.dumps(list(starts), separators=(",", ":")) if starts else ""


def _decode_page_starts(blob: Any) -> tuple[int, ...]:
    if not blob or not isinstance(blob, str):
        return ()
    try:
        return tuple(int(start) for start in json.loads(blob))
    except (ValueError, TypeError):
        log.warning("ignoring unreadable page starts %r", blob[:80])
        return ()
